"""`study(model, data, out, cfg)`: the whole study on one model and data set.

Steps, in order, each resumable (`steps.StepRunner`): similarity and blocks (`analyze`);
pruning with every strategy, whose frozen-encoder teacher is the study's teacher (`prune`);
each mimic variant (`mimic-<v>`); each shared variant with recovery (`share-<v>`); for Whisper
models, word error rate of the teacher and the compressed encoders (`wer`); then one side-by-side
measurement of every variant (`compare`: parameters, bytes, CPU latency, accuracy, capacity)
and the report (`results.json`, `report.html`).

Each compression step trains its own head on the same splits with the same seed, so every
capacity is accuracy / the accuracy of that step's frozen-encoder teacher on the same test split.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..heads import ClassifierHead, prepare_task
from ..models import Encoder, EncoderError, load_encoder
from ..models.latency import bytes_on_disk, measure_latency
from ..models.memo import memo_of, remember_states
from ..results import prepare_out_dir, provenance, write_json
from .config import StudyConfig, parse_mimic, parse_share, preset
from .steps import StepRunner, step_key

DEFAULT_MODEL = "whisper-base"
DEFAULT_DATA = "synth-commands"


def study_clips(ds, cfg: StudyConfig) -> list[int]:
    """The clips every step works on (all splits of the task's seeded subset)."""
    task = prepare_task(ds, cfg.task, seed=cfg.seed, max_clips=cfg.max_clips)
    return sorted({int(i) for idx in task.splits.values() for i in idx})


def _analyze_step(enc: Encoder, ds, cfg: StudyConfig):
    """Similarity on (a seeded subset of) the study's own clips: the teacher states computed
    here are the ones the later steps read from the memo."""
    def run(folder: Path) -> dict:
        from ..similarity.analyze import AnalyzeConfig, analyze

        s = analyze(enc, ds, folder, AnalyzeConfig(max_clips=cfg.analyze_clips, seed=cfg.seed),
                    clips=study_clips(ds, cfg))
        return {"blocks": s["blocks"], "robustness": (s["robustness"] or {}).get("verdict"),
                "clips": s["clips"], "block_influence": s["block_influence"]}
    return run


def _prune_step(enc: Encoder, ds, cfg: StudyConfig):
    def run(folder: Path) -> dict:
        from ..prune import PruneConfig, prune

        res = prune(enc, ds, folder, PruneConfig(task=cfg.task, strategies=cfg.strategies,
                                                 max_clips=cfg.max_clips, seed=cfg.seed)).to_json()
        return {"teacher": res["teacher"], "summary": res["summary"], "best": res["best"],
                "threshold": res["threshold"], "task": res["task"],
                "strategies": {n: {"order": s["order"], "family": s["family"],
                                   "no_refit": s["curves"]["no_refit"]} for n, s in res["strategies"].items()}}
    return run


def _mimic_step(enc: Encoder, ds, cfg: StudyConfig, spec: str):
    def run(folder: Path) -> dict:
        from ..mimic import MimicConfig, mimic

        kind, layers, z = parse_mimic(spec)
        r = mimic(enc, ds, folder, MimicConfig(kind=kind, layers=layers, hidden=z, task=cfg.task,
                                               max_clips=cfg.max_clips, max_minutes=cfg.train_minutes,
                                               seed=cfg.seed)).to_json()
        return {"accuracy": r["mimic"].get("accuracy"), "teacher_accuracy": r["teacher"].get("accuracy"),
                "capacity": r["capacity"], "model_dir": str(folder / "model")}
    return run


def _share_step(model: str, enc: Encoder, ds, cfg: StudyConfig, spec: str):
    def run(folder: Path) -> dict:
        from ..share.command import share
        from ..share.config import ShareConfig

        groups, k, rank = parse_share(spec)
        scfg = ShareConfig(group=k, groups=groups, rank=rank, task=cfg.task, max_clips=cfg.max_clips,
                           init=cfg.share_init, align=cfg.share_align, recover_minutes=cfg.train_minutes,
                           recover_states=cfg.share_recover_states, unlabelled=cfg.share_unlabelled,
                           max_unlabelled=cfg.share_max_unlabelled, asr_weight=cfg.share_asr_weight,
                           wer_clips=0, latency_clips=0, seed=cfg.seed)
        r = share(enc, ds, folder, scfg, spec=model).to_json()
        after = r["after"] or r["before"]
        acc_t = r["teacher"]["accuracy"]
        return {"accuracy": after["accuracy"], "before_accuracy": r["before"]["accuracy"],
                "teacher_accuracy": acc_t, "capacity": after["accuracy"] / acc_t if acc_t else 0.0,
                "stack_ratio": r["size"]["stack_ratio"], "groups": r["groups"],
                "model_dir": str(folder / "model")}
    return run


def _share_recovery_knobs(cfg: StudyConfig) -> list:
    """What changes a shared variant's recovery beyond its spec and budget (for the step keys).
    The defaults give the keys of studies run before these knobs, so those still resume."""
    names = ("share_recover_states", "share_unlabelled", "share_max_unlabelled", "share_asr_weight")
    knobs = [getattr(cfg, n) for n in names]
    return [] if knobs == [getattr(StudyConfig(), n) for n in names] else knobs


def _pruned_variants(prune_summary: dict) -> dict[str, tuple[str, list[int]]]:
    """Pruned models worth measuring: label → (a strategy that chose it, the 0-based layers it
    deletes at its validation-chosen k, no post-training). Strategies that delete the same
    layers build the same model: one entry, labelled with all of them ("backward+greedy")."""
    by_set: dict[tuple[int, ...], list[str]] = {}
    for name, s in prune_summary["strategies"].items():
        k = s["no_refit"]["max_deletable_val"]
        if k > 0:
            by_set.setdefault(tuple(sorted(i - 1 for i in s["order"][:k])), []).append(name)
    return {"+".join(names): (names[0], list(deleted)) for deleted, names in by_set.items()}


def _wer_step(model: str, enc: Encoder, cfg: StudyConfig, prune_summary: dict, mimic_dirs: dict,
              share_dirs: dict):
    """WER of the original decoder reading each encoder's last state: the teacher, each pruned
    variant, each mimic variant (its last layer's output) and each shared variant."""
    def run(folder: Path) -> dict:
        from ..mimic.model import MimicModel
        from ..share import load_shared
        from ..share.evaluate import load_tokenizer, sentence_clips, whisper_wer

        whisper, tok = load_tokenizer(model)
        if whisper is None:
            return {"skipped": f"no Whisper decoder for {model}: {tok}"}
        waves, refs = sentence_clips("synth-sentences", cfg.wer_clips)
        rows = {"teacher": whisper_wer(enc, whisper, tok, waves, refs)}
        for name, (_, deleted) in _pruned_variants(prune_summary).items():
            rows[f"pruned:{name}"] = whisper_wer(enc.without_layers(deleted), whisper, tok, waves, refs)
        for name, d in mimic_dirs.items():
            rows[f"mimic:{name}"] = whisper_wer(MimicModel.load(d), whisper, tok, waves, refs)
        for name, d in share_dirs.items():
            rows[f"shared:{name}"] = whisper_wer(load_shared(d), whisper, tok, waves, refs)
        write_json(folder / "wer.json", rows)
        return {"clips": len(refs), "wer": {k: v["wer"] for k, v in rows.items()},
                "examples": {k: v["hypotheses"][:2] for k, v in rows.items()}, "references": refs[:2]}
    return run


def _encoder_bytes(enc: Encoder) -> int:
    with tempfile.TemporaryDirectory(prefix="stackslim-bytes-") as tmp:
        enc.encoder_module.save_pretrained(tmp, safe_serialization=True)
        return bytes_on_disk(tmp)


def _compare_step(enc: Encoder, ds, cfg: StudyConfig, summaries: dict):
    """Every variant measured the same way, latencies interleaved on the same clips."""
    def run(folder: Path) -> dict:
        from ..mimic.model import MimicModel
        from ..share import load_shared
        from ..share.io import DECODER

        if memo_of(enc) is not None:
            raise RuntimeError("compare must time the teacher's forward pass, not its memo")
        task = prepare_task(ds, cfg.task, seed=cfg.seed, max_clips=cfg.max_clips)
        waves = [ds.load(i) for i in task.splits["test"][: cfg.latency_clips]]
        head = ClassifierHead(enc.hidden_size, task.num_classes)  # timing only: same size as trained
        prune_s = summaries["prune"]
        t_acc = prune_s["teacher"]["test_accuracy"]
        L = enc.num_layers
        rows, fns = [], {}

        def enc_fn(e):
            return lambda w: head(*e.encode(w))

        rows.append({"variant": "teacher", "kind": "teacher", "layers": L,
                     "params": enc.num_params(), "stack_params": enc.num_params(stack_only=True),
                     "bytes": _encoder_bytes(enc), "accuracy": t_acc, "capacity": 1.0})
        fns["teacher"] = enc_fn(enc)
        for name, (strategy, deleted) in _pruned_variants(prune_s).items():
            small = enc.without_layers(deleted)
            curve = prune_s["strategies"][strategy]["no_refit"]
            k = len(deleted)
            v = f"pruned: {name} (−{k})"
            rows.append({"variant": v, "kind": "pruned", "layers": L - k, "params": small.num_params(),
                         "stack_params": small.num_params(stack_only=True), "bytes": _encoder_bytes(small),
                         "accuracy": curve["test_accuracy"][k], "capacity": curve["capacity"][k]})
            fns[v] = enc_fn(small)
        for name, s in summaries.get("mimic", {}).items():
            m = MimicModel.load(s["model_dir"])
            v = f"mimic: {name}"
            rows.append({"variant": v, "kind": "mimic", "layers": len(m.layers),
                         "params": m.num_params("front_end") + m.num_params("stack"),
                         "stack_params": m.num_params("stack"), "bytes": bytes_on_disk(s["model_dir"]),
                         "accuracy": s["accuracy"], "capacity": s["capacity"]})
            fns[v] = m
        for name, s in summaries.get("share", {}).items():
            sh = load_shared(s["model_dir"])
            rep = sh.size_report()
            v = f"shared: {name}"
            decoder = Path(s["model_dir"]) / DECODER  # Whisper's decoder rides along; not counted
            dec_bytes = decoder.stat().st_size if decoder.is_file() else 0
            rows.append({"variant": v, "kind": "shared", "layers": sh.num_layers,
                         "params": rep["encoder_params"], "stack_params": rep["stack_params"],
                         "bytes": bytes_on_disk(s["model_dir"]) - dec_bytes,
                         "accuracy": s["accuracy"],
                         "capacity": s["capacity"]})
            fns[v] = enc_fn(sh)
        lat = interleaved_latency(fns, waves, repeats=5)
        wer = summaries.get("wer", {}).get("wer", {})
        for r in rows:
            r.update(lat[r["variant"]])
            r["speedup"] = lat["teacher"]["batch1_ms"] / r["batch1_ms"]
            r["stack_ratio"] = r["stack_params"] / rows[0]["stack_params"]
            key = r["variant"].split(" (")[0].replace(": ", ":")
            r["wer"] = wer.get(key)
        write_json(folder / "variants.json", rows)
        return {"rows": rows, "latency_clips": len(waves), "threads": torch.get_num_threads()}
    return run


@torch.inference_mode()
def interleaved_latency(fns: dict, waves: list, repeats: int = 5, shuffle: bool = True) -> dict[str, dict]:
    """Median ms per clip at batch 1 and batched, for every variant, timed round-robin so that
    machine noise hits all variants alike. Each round takes the variants in a new seeded random
    order: the variant timed right after a large one finds the caches filled with the other's
    weights (bench/latency_order.py: three identical small models after whisper-base in a fixed
    order, the one that follows the teacher is the slowest), so no variant keeps that place.
    `shuffle=False`: the fixed order of `fns`, to measure that bias."""
    one = {k: [] for k in fns}
    many = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f(waves[:1])
        f(waves)
    keys = list(fns)
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for k in [keys[i] for i in (rng.permutation(len(keys)) if shuffle else range(len(keys)))]:
            f = fns[k]
            one[k].append(measure_latency(f, waves[:1], warmup=0, repeats=1)["median_ms"])
            many[k].append(measure_latency(f, waves, warmup=0, repeats=1)["median_ms"] / len(waves))
    return {k: {"batch1_ms": float(np.median(one[k])), "batched_ms": float(np.median(many[k]))} for k in fns}


def study(model: str = DEFAULT_MODEL, data: str = DEFAULT_DATA, out: str | os.PathLike = "runs/study",
          cfg: StudyConfig = StudyConfig(), progress: bool = True) -> dict:
    """Run (or resume) the study and write DIR/results.json and DIR/report.html."""
    from ..data import load_dataset
    from .report import write_report

    cfg = preset(cfg)
    out = prepare_out_dir(out)
    enc = load_encoder(model)
    ds = load_dataset(data)
    is_whisper = enc.family == "whisper"
    if cfg.share_asr_weight > 0 and not (is_whisper and cfg.share_unlabelled):
        # fail before the first step, not after prune and mimic have run
        raise EncoderError(f"--share-asr-weight needs a Whisper model and clips to transcribe "
                           f"(--share-unlabelled SPEC); got {enc.family!r} and "
                           f"{cfg.share_unlabelled or 'no --share-unlabelled'}")
    names = (["analyze", "prune"] + [f"mimic-{m}" for m in cfg.mimic_grid]
             + [f"share-{s}" for s in cfg.share_grid] + (["wer"] if is_whisper else []) + ["compare"])
    runner = StepRunner(out, names, progress=progress, stop_after=cfg.stop_after)
    base = [model, str(data), cfg.task, cfg.seed, cfg.max_clips]
    summaries: dict = {}
    try:
        with remember_states(enc):  # the teacher runs once per clip, not once per step
            summaries["analyze"] = runner.run("analyze", step_key(*base, cfg.analyze_clips),
                                              _analyze_step(enc, ds, cfg))
            summaries["prune"] = runner.run("prune", step_key(*base, cfg.strategies), _prune_step(enc, ds, cfg))
            summaries["mimic"] = {m: runner.run(f"mimic-{m}", step_key(*base, m, cfg.train_minutes),
                                                _mimic_step(enc, ds, cfg, m)) for m in cfg.mimic_grid}
            share_knobs = [cfg.share_init, cfg.share_align, *_share_recovery_knobs(cfg)]
            summaries["share"] = {s: runner.run(f"share-{s}", step_key(*base, s, cfg.train_minutes, *share_knobs),
                                                _share_step(model, enc, ds, cfg, s)) for s in cfg.share_grid}
            if is_whisper:
                dirs = {step: {k: v["model_dir"] for k, v in summaries[step].items()} for step in ("mimic", "share")}
                summaries["wer"] = runner.run("wer", step_key(*base, cfg.strategies, cfg.mimic_grid, cfg.share_grid,
                                                              cfg.wer_clips, cfg.train_minutes, *share_knobs),
                                              _wer_step(model, enc, cfg, summaries["prune"], dirs["mimic"],
                                                        dirs["share"]))
        # outside the memo: the teacher's latency must be its forward pass, not a lookup
        summaries["compare"] = runner.run("compare", step_key(*base, sorted(summaries), cfg.latency_clips,
                                                              [runner.ran]),
                                          _compare_step(enc, ds, cfg, summaries))
    finally:
        runner.close()
    results = {"model": enc.name, "family": enc.family, "num_layers": enc.num_layers, "data": ds.name,
               "clips_in_data": len(ds), "config": asdict(cfg), "versions": provenance(),
               "steps_run": runner.ran, "steps_skipped": runner.skipped, **summaries}
    write_json(out / "results.json", results)
    write_report(results, out)
    return results
