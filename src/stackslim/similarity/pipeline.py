"""`run(model, data, out, cfg)`: layer-by-layer similarity of one model on one data set.

    from stackslim.similarity import AnalyzeConfig, run
    res = run("whisper-base", "synth-commands", "runs/analyze", AnalyzeConfig(max_clips=200))
    res.blocks["cka"].blocks                     # the blocks found on linear CKA

Writes `DIR/similarity.json` (every metric's (L+1)×(L+1) matrix, Block Influence, the model,
data and config), `DIR/blocks.json` (blocks per metric, the outlier-channel robustness check),
`DIR/heatmap_<metric>.png` and `DIR/config.json`. Every file is written atomically; a
checkpoint of the streaming statistics (`DIR/.analyze.ckpt`) lets a killed run resume.

Under torchrun each rank encodes its shard of the clips (rank r takes clips r, r+W, ...);
the statistics are summed with all_reduce, so the matrices equal the one-process ones; only
rank 0 writes. The model runs on `cfg.device` (auto: the rank's GPU when CUDA is available);
the statistics stay on that device and only their reduced sums are written.

Memory: the model, one forward batch, and the statistics, bounded whatever the number of clips
(`bench/scale.py` measures it). `estimator="minibatch"` and `metrics=("cosine", "cka"),
cka_space="feature"` (exact CKA from (L+1)²/2 streamed D×D sums) keep nothing per clip; the
exact default (Gram-space CKA and mutual kNN over all clips) writes every clip's pooled states,
(L+1)·D float64 per clip, to a temporary file (under $TMPDIR) and reads it back in blocks for
the N×N Grams (working set `allpairs.CHUNK_BYTES`, 64 MiB), keeping only k neighbour indices
per clip and state. Its checkpoints copy that file beside the checkpoint
(`DIR/.analyze.ckpt.samples`, appended to, removed with the checkpoint).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import runtime
from ..data import AudioDataset, load_dataset
from ..heads import prepare_task
from ..models import Encoder
from ..results import provenance
from ..run import Run, fingerprint, start_run
from .allpairs import check_knn_samples
from .blocks import Blocks, find_blocks
from .config import AnalyzeConfig
from .engine import SimilarityEngine
from .outliers import RobustnessReport, robustness_check
from .plots import plot_heatmap
from .result import SimilarityResult

COMMAND = "analyze"
CKPT = ".analyze.ckpt"
WRITES = ("similarity.json", "blocks.json", "heatmap_*.png")  # the results file first


@dataclass
class AnalyzeResult:
    """What `stackslim analyze` measured.

    `summary()` is DIR/similarity.json; `to_json()` adds the blocks and the robustness check
    (DIR/blocks.json) to it.
    """

    model: str
    family: str
    num_layers: int
    data: str
    clips: int
    processes: int
    device: str
    config: AnalyzeConfig
    similarity: SimilarityResult
    blocks: dict[str, Blocks]
    robustness: RobustnessReport | None
    block_influence: dict[str, list[float]]
    seconds: float
    provenance: dict = field(default_factory=provenance)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model, "family": self.family, "num_layers": self.num_layers,
            "data": self.data, "clips": self.clips, "processes": self.processes, "device": self.device,
            "final_norm": self.config.final_norm, "config": asdict(self.config), "versions": self.provenance,
            "seconds": round(self.seconds, 2), "similarity": self.similarity.to_json(),
            "block_influence": self.block_influence,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "blocks": {m: b.to_json() for m, b in self.blocks.items()},
                "robustness": self.robustness.to_json() if self.robustness is not None else None}


def select_clips(ds: AudioDataset, cfg: AnalyzeConfig, clips: Sequence[int] | None = None) -> list[int]:
    """Indices of the clips to analyse: `clips` (or `cfg.split`), then a seeded subset of
    `cfg.max_clips`."""
    if clips is not None:
        idx = sorted(int(i) for i in clips)
    elif cfg.split == "all":
        idx = list(range(len(ds)))
    else:
        idx = prepare_task(ds, "word", seed=cfg.seed).splits[cfg.split]
    if cfg.max_clips and cfg.max_clips < len(idx):
        rng = np.random.default_rng(cfg.seed)
        idx = sorted(rng.choice(idx, size=cfg.max_clips, replace=False).tolist())
    return idx


def _new_engine(num_states: int, cfg: AnalyzeConfig) -> SimilarityEngine:
    return SimilarityEngine(num_states, metrics=cfg.metrics, view=cfg.view, estimator=cfg.estimator,
                            k=cfg.k, batch_size=cfg.minibatch, cka_space=cfg.cka_space,
                            knn_center=cfg.knn_center)


def _resume(engine: SimilarityEngine, ckpt: Path, key: str) -> int:
    """Batches already done by an earlier run with the same key (0 without a usable checkpoint).
    An unreadable checkpoint is only lost time: discarded with a warning naming the file."""
    if not ckpt.exists():
        return 0
    try:
        saved = torch.load(ckpt, weights_only=True)
        if saved.get("key") != key:
            return 0
        engine.load_state_dict(saved["engine"])
        return int(saved["batches"])
    except (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, AttributeError,
            pickle.UnpicklingError) as e:
        warnings.warn(f"discarding the unreadable checkpoint {ckpt} ({type(e).__name__}: {e}); "
                      "starting over", stacklevel=3)
        return -1


def run(model: str | os.PathLike | Encoder, data: str | os.PathLike | AudioDataset,
        out: str | os.PathLike, cfg: AnalyzeConfig = AnalyzeConfig(), *, progress: bool = True,
        force: bool = False, clips: Sequence[int] | None = None) -> AnalyzeResult:
    """Run the analysis and write its files (`stackslim analyze`).

    Args:
        model: an encoder spec for `load_encoder`, or an `Encoder` (the study passes its
            teacher, whose states are then kept for later steps by its memo).
        data: a data set spec for `load_dataset`, or an `AudioDataset`.
        out: the output folder.
        cfg: the options (checked when built).
        progress: show a progress bar.
        force: take over a folder that holds another command's run.
        clips: data set indices to analyse, replacing the choice of `cfg.split`;
            `cfg.max_clips` still takes a seeded subset of them.

    Returns:
        The result, on every rank under torchrun (rank 0 alone writes).
    """
    t0 = time.monotonic()
    device = runtime.choose_device(cfg.device)  # a missing device fails before anything is written
    with start_run(COMMAND, out, cfg, model=model, data=data, writes=WRITES, force=force) as r:
        rank, world = runtime.rank(), runtime.world_size()
        ds = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
        data_name = str(data) if isinstance(data, (str, os.PathLike)) else ds.name
        idx = select_clips(ds, cfg, clips)
        if "mknn" in cfg.metrics and cfg.estimator == "dataset":  # its views have one sample per clip:
            check_knn_samples(len(idx), cfg.k, "samples (clips)")  # say so before the forward passes
        enc = r.encoder(model).to(device)
        model_name = enc.name if isinstance(model, Encoder) else str(model)
        mine = runtime.shard(idx)
        engine = _new_engine(enc.num_layers + 1, cfg)
        # resume: the checkpoint is tied to the inputs' content, the options and this rank's shard
        same = {k: v for k, v in asdict(cfg).items() if k != "device"}  # a resume may switch device
        key = hashlib.sha1(json.dumps([model_name, data_name, fingerprint(model_name, ds), same, mine,
                                       world]).encode()).hexdigest()
        suffix = f".rank{rank}" if world > 1 else ""
        ckpt = r.out / (CKPT + suffix)
        samples_file = r.out / (CKPT + ".samples" + suffix)  # stored samples, appended per checkpoint
        done = _resume(engine, ckpt, key)
        if done < 0:
            engine.close()
            engine, done = _new_engine(enc.num_layers + 1, cfg), 0
        batches = list(range(0, len(mine), cfg.encode_batch))
        bar = tqdm(total=len(mine), initial=min(done * cfg.encode_batch, len(mine)), unit="clip",
                   desc=f"analyze {enc.name}", disable=not progress or rank != 0)
        for b, start in enumerate(batches):
            if b < done:
                continue
            chunk = mine[start : start + cfg.encode_batch]
            engine.update(enc.hidden_states([ds.load(i) for i in chunk], final_norm=cfg.final_norm))
            bar.update(len(chunk))
            if cfg.checkpoint_every and (b + 1) % cfg.checkpoint_every == 0 and b + 1 < len(batches):
                tmp = ckpt.with_name(ckpt.name + ".tmp")
                torch.save({"key": key, "batches": b + 1, "engine": engine.state_dict(samples_file)}, tmp)
                os.replace(tmp, ckpt)
        bar.close()
        engine.all_reduce()
        res = engine.result()
        blocks = {m: find_blocks(res.matrices[m]) for m in res.matrices}
        robust = None
        if cfg.robustness and cfg.estimator == "dataset" and cfg.view != "flat" and "cka" in res.matrices:
            robust = robustness_check(engine, metric="cka")
        engine.close()
        result = AnalyzeResult(
            model=enc.name, family=enc.family, num_layers=enc.num_layers,
            data=getattr(ds, "name", data_name), clips=len(idx), processes=world, device=str(device),
            config=cfg, similarity=res, blocks=blocks, robustness=robust,
            block_influence={m: res.block_influence(m).tolist() for m in ("cosine", "mknn")
                             if m in res.matrices},
            seconds=time.monotonic() - t0)
        if r.is_main:
            _write(r, result)
        for p in r.out.glob(CKPT + "*"):
            if p.name.startswith(CKPT) and (world == 1 or p.name.endswith(f".rank{rank}")):
                p.unlink(missing_ok=True)
    return result


def _write(r: Run, result: AnalyzeResult) -> None:
    """blocks.json, the heatmaps, then similarity.json (written last: it marks a finished run)."""
    cfg, res = result.config, result.similarity
    full = result.to_json()
    r.write_json("blocks.json", {"blocks": full["blocks"], "robustness": full["robustness"]})
    for m, mat in res.matrices.items():
        lo = None if m == "cka" and cfg.estimator == "unbiased" else 0.0
        plot_heatmap(mat, f"{result.model} on {result.data}: {m} ({cfg.view}, {cfg.estimator}, "
                     f"n={res.n_samples})", result.blocks[m], path=r.out / f"heatmap_{m}.png", vmin=lo)
    r.write_json("similarity.json", result.summary())
