"""The steps of `stackslim fit` that every task runs (`pipeline.run` for the classification
tasks, `pipeline_asr.run_asr` for --task asr): the budget checks before anything is written
(`check_budget`), the candidates and their predictions (`plan_candidates`), the compositions
trained (`select_trials`), their search and measurement (`search_candidates`, `measure`), and
the winner saved and exported and fit.json written (`save_winner`, `finish`).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StackslimError
from ..models.base import Encoder
from ..prune.save import save_head, save_pruned
from ..results import provenance
from .grid import MB, check_bytes, check_latency, compositions, variants, widths
from .config import FitConfig, FitError
from .int8 import write_encoder
from .latency import LatencyModel, probe_clip, time_ms
from .plot import plot_pareto
from .predict import METHODS, Account, Candidate
from .search import Scorer, Trial, affordable, build, halving

COMMAND = "fit"
RESULT = "fit.json"
WRITES = (RESULT, "pareto.png", "model", "onnx")


@dataclass
class FitResult:
    """What `fit` measured; `to_json()` is out/fit.json. Accuracies and WERs are fractions,
    bytes of the encoder's stored tensors, latencies in ms per 1 s clip."""

    model: str
    data: str
    config: dict
    task: dict
    budget: dict
    latency_model: dict
    deletion_order: list[int]  # 1-based
    teacher: dict
    candidates: list[dict]
    search: dict
    winner: dict | None
    seconds: float
    notes: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=provenance)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_candidates(enc: Encoder, order: list[int], cfg: FitConfig, account: Account, lat: LatencyModel):
    """Every candidate (float and int8 variants) with its predicted bytes and latency."""
    rows: dict[Candidate, dict] = {}
    for comp in compositions(enc, order, cfg):
        for v in variants(comp, cfg):
            p = account.predict(v)
            ms = lat.predict(v, account) if p is not None else None
            fits = (p is not None and p.bytes <= cfg.max_mb * MB
                    and (not cfg.max_ms or ms <= cfg.max_ms))
            rows[v] = {**v.to_json(), "predicted_bytes": p.bytes if p else None,
                       "predicted_ms": ms, "fits": fits, "trained": False}
    return rows


def check_budget(enc: Encoder, cfg: FitConfig) -> tuple[Account, LatencyModel]:
    """The account and the latency model; FitError for a budget nothing can meet. Layers of
    one stack have the same shapes in every supported family, so a provisional deletion order
    gives the same byte predictions as the measured one."""
    account = Account(enc, cfg.group)
    provisional = list(range(1, enc.num_layers))
    comps = [v for c in compositions(enc, provisional, cfg) for v in variants(c, cfg)]
    check_bytes(cfg, account, {c: (p.bytes if (p := account.predict(c)) else None) for c in comps})
    lat = LatencyModel.measure(enc, widths(enc, cfg))
    check_latency(cfg, lat, {c: lat.predict(c, account) for c in comps
                                  if account.predict(c) is not None})
    return account, lat


def select_trials(rows: dict[Candidate, dict], n: int) -> list[Trial]:
    """Up to n fitting compositions: per method, the largest fitting first, methods in turn."""
    comps: dict[Candidate, list[Candidate]] = {}
    for v, row in rows.items():
        if row["fits"]:
            comps.setdefault(v.composition, []).append(v)
    size = {c: max(rows[v]["predicted_bytes"] for v in vs) for c, vs in comps.items()}
    queues = {m: sorted([c for c in comps if c.method == m], key=lambda c: -size[c]) for m in METHODS}
    out: list[Trial] = []
    while len(out) < n and any(queues.values()):
        for m in METHODS:
            if queues[m] and len(out) < n:
                c = queues[m].pop(0)
                out.append(Trial(c, comps[c]))
    return out

def search_candidates(enc: Encoder, order: list[int], cfg: FitConfig, account: Account,
                      lat: LatencyModel, scorer: Scorer, head, calib: list, progress: bool, log,
                      prepare=None) -> tuple[dict[Candidate, dict], dict, tuple | None]:
    """Plan every candidate, build the fitting ones (at most --max-candidates, as many as the
    epoch budget affords), train them by successive halving and measure them.

    Args:
        scorer: the task's recovery and ranking (`search.WordScorer`, `asr.AsrScorer`).
        head: the teacher's head (None for --task asr); calib: clips of the sharing conversion.
        prepare: called with the trials before they are built (e.g. the mimic's caches).

    Returns:
        (rows: candidate → its fit.json row, the search record, the winner (trial, variant)
        or None).

    Raises:
        FitError: no candidate fits.
    """
    rows = plan_candidates(enc, order, cfg, account, lat)
    trials = select_trials(rows, cfg.max_candidates)
    if not trials:
        raise FitError(f"no candidate fits --max-mb {cfg.max_mb:g}" +
                       (f" and --max-ms {cfg.max_ms:g}" if cfg.max_ms else ""))
    fitting = len(trials)
    trials = trials[: affordable(fitting, cfg.epochs_budget)]
    if prepare is not None:
        prepare(trials)
    for t in trials:
        t.student = build(t.comp, enc, head, cfg.group, calib, cfg.train.seed)
        rows[t.comp][f"built_{scorer.metric}"] = scorer.score(t.student, t.comp)
    search = halving(trials, scorer, cfg.train, cfg.epochs_budget, cfg.minutes, progress, log)
    search["selected"], search["trained"] = fitting, len(trials)
    return rows, search, measure(trials, rows, scorer, cfg)


def finish(r, result: FitResult, winner: tuple | None, rows: dict, head, meta: dict,
           cfg: FitConfig, t0: float) -> FitResult:
    """Save the winner (`save_winner`, with `meta` and its composition), plot, and write
    fit.json last into the run `r`'s folder."""
    if winner is not None:
        trial, v = winner
        result.winner = {**rows[v], "folder": "model",
                         **save_winner(trial, v, head, {**meta, "fit": v.to_json()}, r.out, cfg,
                                       result.notes)}
    plot_pareto(result, r.out / "pareto.png")
    result.seconds = round(time.monotonic() - t0, 1)
    r.write_json(RESULT, result)
    return result


def measure(trials: list[Trial], rows: dict, scorer: Scorer, cfg: FitConfig):
    """The reported numbers (`scorer.final`: test accuracy, or eval WER with its interval),
    written bytes and measured latency of every trained variant; the winner (trial, variant):
    the best ranking score (`scorer.metric`: highest validation accuracy, lowest agreement
    WER) among those that fit, then fewer bytes."""
    probe = probe_clip()
    best, key = None, None
    with tempfile.TemporaryDirectory(prefix="stackslim-fit-") as tmp:
        for t in trials:
            if t.epochs == 0 and not t.val:
                continue
            ms = time_ms(lambda s=t.student: s.hidden_states([probe]))
            for v in t.variants:
                row = rows[v]
                written = write_encoder(t.student, Path(tmp) / f"{v.name}.safetensors", v.int8)
                row.update(trained=True, epochs=t.epochs, minutes=round(t.seconds / 60, 3),
                           stopped_by=t.stopped_by, rounds=t.rounds,
                           written_bytes=written, measured_ms=ms,
                           bytes_error=written / row["predicted_bytes"] - 1)
                row[scorer.metric] = t.val.get(v.name)
                row.update(scorer.final(t.student, v))
                ok = written <= cfg.max_mb * MB and (not cfg.max_ms or row["predicted_ms"] <= cfg.max_ms)
                row["fits_written"] = ok
                sign = -1.0 if scorer.lower_is_better else 1.0
                k = (sign * row[scorer.metric], -written)
                if ok and (key is None or k > key):
                    best, key = (t, v), k
    return best


def save_winner(t: Trial, v: Candidate, head, meta: dict, out: Path, cfg: FitConfig,
                notes: list[str]) -> dict:
    """The winner in out/model (the method's own folder, with `head` and `meta`; `head` None:
    a Whisper model for --task asr, its decoder kept; + encoder.int8.safetensors for an int8
    winner) and its ONNX export in out/onnx."""
    path = out / "model"
    if v.method == "prune":
        save_pruned(t.student, [], head, path, meta=meta)
    elif v.method == "share":
        t.student.save(path)
        if head is not None:
            save_head(head, path, meta)
    else:
        t.student.mimic.class_names = list(meta["classes"])
        t.student.mimic.save(path)
    info: dict[str, Any] = {}
    if v.int8:
        info["int8_file"] = "model/encoder.int8.safetensors"
        info["int8_file_bytes"] = write_encoder(t.student, path / "encoder.int8.safetensors", True)
    if cfg.onnx:
        from ..export import ExportConfig
        from ..export import run as export_run

        try:
            res = export_run(path, out / "onnx", ExportConfig(format="onnx", int8=v.int8))
            info["onnx"] = {"folder": "onnx", "files": res.files,
                            "max_abs_diff": res.parity.get("max_abs_diff")}
        except (StackslimError, ImportError) as e:
            notes.append(f"ONNX export of the winner failed: {e}")
    return info
