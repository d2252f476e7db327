"""`stackslim analyze`: layer-by-layer similarity of one model on one data set.

    stackslim analyze whisper-base synth-commands --out runs/analyze
    torchrun --nproc_per_node=2 -m stackslim analyze random:wavlm DATA --out DIR   # sharded

Writes `DIR/similarity.json` (every metric's (L+1)×(L+1) matrix, Block Influence, the model,
data and config), `DIR/blocks.json` (blocks per metric, the outlier-channel robustness check),
`DIR/heatmap_<metric>.png` and `DIR/config.json`. Every file is written atomically; a
checkpoint of the streaming statistics (`DIR/.analyze.ckpt`) lets a killed run resume.

Under torchrun each rank encodes its shard of the clips (rank r takes clips r, r+W, ...);
the statistics are summed with all_reduce, so the matrices equal the one-process ones; only
rank 0 writes. The model runs on `--device` (auto: the rank's GPU when CUDA is available);
the statistics stay on that device and only their reduced sums are written.

Memory: the model, one forward batch, and the statistics, bounded whatever the number of clips
(`bench/scale.py` measures it). `--estimator minibatch` and `--metrics cosine,cka --cka-space
feature` (exact CKA from (L+1)²/2 streamed D×D sums) keep nothing per clip; the exact default
(Gram-space CKA and mutual kNN over all clips) writes every clip's pooled states, (L+1)·D float64
per clip, to a temporary file (under $TMPDIR) and reads it back in blocks for the N×N Grams
(working set `allpairs.CHUNK_BYTES`, 64 MiB), keeping only k neighbour indices per clip and
state. Its checkpoints copy that file beside the checkpoint (`DIR/.analyze.ckpt.samples`,
appended to, removed with the checkpoint).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import runtime
from ..config import add_config_args, config_from_args
from ..results import prepare_out_dir, provenance, write_json
from .allpairs import check_knn_samples
from .blocks import find_blocks
from .engine import ESTIMATORS, METRICS, SimilarityEngine

if TYPE_CHECKING:
    from ..data import AudioDataset
    from ..models import Encoder
from .errors import SimilarityError
from .outliers import robustness_check
from .plots import plot_heatmap
from .views import VIEWS

COMMAND = "analyze"
CKPT = ".analyze.ckpt"


@dataclass(frozen=True)
class AnalyzeConfig:
    """Options of `stackslim analyze MODEL DATA --out DIR` (defaults: the paper's metrics on
    pooled states, exact over the whole data set)."""

    metrics: tuple[str, ...] = field(default=METRICS, metadata={"help": "metrics: cosine, cka, mknn"})
    view: str = field(default="pooled", metadata={"help": "samples: pooled (one per clip), frames, flat",
                                                   "choices": VIEWS})
    estimator: str = field(default="dataset", metadata={"help": "dataset (exact, streaming), minibatch "
                                                        "(paper), unbiased (Nguyen 2021)", "choices": ESTIMATORS})
    k: int = field(default=8, metadata={"help": "neighbours of mutual kNN"})
    batch_size: int = field(default=128, metadata={"help": "samples per minibatch (minibatch/unbiased)"})
    cka_space: str = field(default="auto", metadata={
        "help": "exact CKA in gram space (stores every sample: memory grows with the clips) or "
                "feature space (D×D sums: memory independent of the clips); auto: feature for "
                "frames, gram otherwise", "choices": ("auto", "gram", "feature")})
    encode_batch: int = field(default=16, metadata={"help": "clips per forward pass"})
    max_clips: int = field(default=0, metadata={"help": "use at most this many clips (0: all), seeded"})
    split: str = field(default="all", metadata={"help": "which clips: all, train, validation, test",
                                                "choices": ("all", "train", "validation", "test")})
    seed: int = field(default=0, metadata={"help": "seed of the clip subset and split"})
    final_norm: bool = field(default=True, metadata={"help": "state L after the family's final norm"})
    robustness: bool = field(default=True, metadata={"help": "check blocks against outlier channels"})
    checkpoint_every: int = field(default=20, metadata={"help": "batches between resume checkpoints"})
    device: str = field(default="auto", metadata={"help": runtime.DEVICE_HELP})


def select_clips(ds, cfg: AnalyzeConfig, clips: Sequence[int] | None = None) -> list[int]:
    """Indices of the clips to analyse: `clips` (or `cfg.split`), then a seeded subset of
    `cfg.max_clips`."""
    if clips is not None:
        idx = sorted(int(i) for i in clips)
    elif cfg.split == "all":
        idx = list(range(len(ds)))
    else:
        from ..heads.task import prepare_task

        idx = prepare_task(ds, "word", seed=cfg.seed).splits[cfg.split]
    if cfg.max_clips and cfg.max_clips < len(idx):
        rng = np.random.default_rng(cfg.seed)
        idx = sorted(rng.choice(idx, size=cfg.max_clips, replace=False).tolist())
    return idx


def analyze(model: str | Encoder, data: str | AudioDataset, out: str | os.PathLike,
            cfg: AnalyzeConfig = AnalyzeConfig(), progress: bool = True,
            clips: Sequence[int] | None = None) -> dict:
    """Run the analysis and write its files; returns the content of similarity.json.

    `model` and `data` may be given loaded (the study passes its teacher, whose states are then
    kept for later steps by its memo); `clips` (data set indices) replaces the choice of
    `cfg.split`; `cfg.max_clips` still takes a seeded subset of them.
    """
    from ..data import load_dataset
    from ..models import Encoder, load_encoder

    rank, world = runtime.init_from_env()
    device = runtime.choose_device(cfg.device)
    out_dir = prepare_out_dir(out) if rank == 0 else Path(out)
    t0 = time.monotonic()
    if not cfg.metrics:
        raise SimilarityError("give at least one metric")
    # a one-state engine checks metrics, view, estimator and k before the model loads
    SimilarityEngine(1, metrics=cfg.metrics, view=cfg.view, estimator=cfg.estimator, k=cfg.k,
                     batch_size=cfg.batch_size, cka_space=cfg.cka_space)
    ds = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    data = str(data) if isinstance(data, (str, os.PathLike)) else ds.name
    idx = select_clips(ds, cfg, clips)
    if "mknn" in cfg.metrics and cfg.estimator == "dataset":  # its views have one sample per clip:
        check_knn_samples(len(idx), cfg.k, "samples (clips)")  # say so before the forward passes
    enc = (model if isinstance(model, Encoder) else load_encoder(model)).to(device)
    model = enc.name if isinstance(model, Encoder) else model
    mine = runtime.shard(idx)

    def new_engine() -> SimilarityEngine:
        return SimilarityEngine(enc.num_layers + 1, metrics=cfg.metrics, view=cfg.view,
                                estimator=cfg.estimator, k=cfg.k, batch_size=cfg.batch_size,
                                cka_space=cfg.cka_space)

    engine = new_engine()
    # resume: the checkpoint is tied to the run's inputs and this rank's shard
    same = {k: v for k, v in asdict(cfg).items() if k != "device"}  # a resume may switch device
    key = hashlib.sha1(json.dumps([model, data, same, mine, world]).encode()).hexdigest()
    suffix = f".rank{rank}" if world > 1 else ""
    ckpt = out_dir / (CKPT + suffix)
    samples_file = out_dir / (CKPT + ".samples" + suffix)  # stored samples, appended per checkpoint
    done = 0
    if ckpt.exists():
        try:
            saved = torch.load(ckpt, weights_only=True)
            if saved.get("key") == key:
                engine.load_state_dict(saved["engine"])
                done = int(saved["batches"])
        except Exception:  # a corrupt checkpoint is only lost time: start over
            engine.close()
            engine, done = new_engine(), 0
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
    summary = {
        "model": enc.name, "family": enc.family, "num_layers": enc.num_layers,
        "data": getattr(ds, "name", str(data)), "clips": len(idx), "processes": world,
        "device": str(device),
        "final_norm": cfg.final_norm, "config": asdict(cfg), "versions": provenance(),
        "seconds": round(time.monotonic() - t0, 2),
        "similarity": res.to_json(),
        "block_influence": {m: res.block_influence(m).tolist() for m in ("cosine", "mknn")
                            if m in res.matrices},
    }
    if rank == 0:
        # similarity.json marks a finished run: removed first, written last
        (out_dir / "similarity.json").unlink(missing_ok=True)
        write_json(out_dir / "config.json", {"model": model, "data": data, **asdict(cfg)})
        write_json(out_dir / "blocks.json", {
            "blocks": {m: b.to_json() for m, b in blocks.items()},
            "robustness": robust.to_json() if robust is not None else None})
        for m, mat in res.matrices.items():
            lo = None if m == "cka" and cfg.estimator == "unbiased" else 0.0
            plot_heatmap(mat, f"{enc.name} on {summary['data']}: {m} ({cfg.view}, {cfg.estimator}, "
                         f"n={res.n_samples})", blocks[m], path=out_dir / f"heatmap_{m}.png", vmin=lo)
        write_json(out_dir / "similarity.json", summary)
    for p in out_dir.glob(CKPT + "*"):
        if p.name.startswith(CKPT) and (world == 1 or p.name.endswith(f".rank{rank}")):
            p.unlink(missing_ok=True)
    summary["blocks"] = {m: b.to_json() for m, b in blocks.items()}
    summary["robustness"] = robust.to_json() if robust is not None else None
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    """similarity matrices, blocks and heatmaps of a model's hidden states"""
    p.add_argument("model", help="random:<family>, whisper-tiny.en, whisper-base, a folder or hub id")
    p.add_argument("data", help="synth-commands, a folder per label, or a CSV manifest")
    p.add_argument("--out", required=True, help="output folder")
    add_config_args(p, AnalyzeConfig)


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(AnalyzeConfig, ns)
    summary = analyze(ns.model, ns.data, ns.out, cfg)
    if runtime.is_main():
        for m, b in summary["blocks"].items():
            print(f"{m:>6}: blocks {b['blocks']}")
        if summary["robustness"]:
            print(f"robustness: {summary['robustness']['verdict']}")
        print(f"wrote {ns.out}/similarity.json, blocks.json, heatmaps ({summary['seconds']} s, "
              f"{summary['clips']} clips)")
    return 0
