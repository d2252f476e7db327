"""The study's last steps: word error rate of every encoder through the Whisper decoder
(`wer`), and every variant measured side by side the same way (`compare`: parameters, bytes,
CPU latency interleaved on the same clips, accuracy, capacity, WER, and for a multilingual
Whisper teacher BLEU, chrF and same-language WER from the `translate` step; unless --no-onnx,
each variant's onnxruntime int8 export beside its PyTorch row: `study.int8`)."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from ..data import AudioDataset
from ..evaluate.latency import bytes_on_disk, interleaved_latency
from ..evaluate.wer import load_tokenizer, sentence_clips, whisper_wer
from ..heads import ClassifierHead, prepare_task
from ..mimic.model import MimicModel
from ..models import Encoder
from ..models.memo import memo_of
from ..results import write_json
from ..share.io import DECODER
from ..share.load import load_shared
from .config import StudyConfig
from .int8 import Int8Columns


def pruned_variants(prune_summary: dict) -> dict[str, tuple[str, list[int]]]:
    """Pruned models worth measuring: label → (a strategy that chose it, the 0-based layers it
    deletes at its validation-chosen k, no post-training). Strategies that delete the same
    layers build the same model: one entry, labelled with all of them ("backward+greedy")."""
    by_set: dict[tuple[int, ...], list[str]] = {}
    for name, s in prune_summary["strategies"].items():
        k = s["no_refit"]["max_deletable_val"]
        if k > 0:
            by_set.setdefault(tuple(sorted(i - 1 for i in s["order"][:k])), []).append(name)
    return {"+".join(names): (names[0], list(deleted)) for deleted, names in by_set.items()}


def whisper_variants(enc: Encoder, prune_summary: dict, mimic_summaries: dict,
                     share_summaries: dict) -> Iterator[tuple[str, object]]:
    """(key, encoder) of every encoder the original Whisper decoder can read: the teacher, each
    pruned variant, each mimic variant (its last layer's output) and each shared variant; keys
    ``teacher``, ``pruned:<strategies>``, ``mimic:<v>``, ``shared:<v>`` (`row_key` of a row).
    Each is built when its turn comes, so one compressed encoder is held at a time."""
    yield "teacher", enc
    for name, (_, deleted) in pruned_variants(prune_summary).items():
        yield f"pruned:{name}", enc.without_layers(deleted)
    for name, s in mimic_summaries.items():
        yield f"mimic:{name}", MimicModel.load(s["model_dir"])
    for name, s in share_summaries.items():
        yield f"shared:{name}", load_shared(s["model_dir"])


def row_key(variant: str) -> str:
    """The `whisper_variants` key of a side-by-side row: "pruned: bi (−2)" → "pruned:bi"."""
    return variant.split(" (")[0].replace(": ", ":")


def wer_step(model: str, enc: Encoder, wer_clips: int, prune_summary: dict, mimic_summaries: dict,
             share_summaries: dict):
    """WER of the original decoder reading each encoder's last state (`whisper_variants`), with
    its bootstrap 95% interval over clips (``interval``: [low, high])."""
    def step(folder: Path) -> dict:
        whisper, tok = load_tokenizer(model)
        if whisper is None:
            return {"skipped": f"no Whisper decoder for {model}: {tok}"}
        waves, refs = sentence_clips("synth-sentences", wer_clips)
        rows = {name: whisper_wer(e, whisper, tok, waves, refs)
                for name, e in whisper_variants(enc, prune_summary, mimic_summaries, share_summaries)}
        write_json(folder / "wer.json", rows)
        return {"clips": len(refs), "wer": {k: v["wer"] for k, v in rows.items()},
                "interval": {k: v["interval"] for k, v in rows.items()},
                "examples": {k: v["hypotheses"][:2] for k, v in rows.items()}, "references": refs[:2]}
    return step


def translation_columns(table: dict | None) -> dict:
    """A row's translation columns from its `score_table` (None: not measured): overall BLEU,
    chrF and same-language WER % (``bleu``, ``chrf``, ``wer_other``), and ``translation``, the
    whole table (per language and "all", with 95% intervals)."""
    if not table:
        return {}
    a = table["all"]
    return {"bleu": a["bleu"], "chrf": a["chrf"], "wer_other": a.get("wer_pct"), "translation": table}


def _encoder_bytes(enc: Encoder) -> int:
    """Bytes of the encoder saved as safetensors (a temporary save: no progress bar)."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix="stackslim-bytes-") as tmp:
            enc.encoder_module.save_pretrained(tmp, safe_serialization=True)
            return bytes_on_disk(tmp)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _capped(s: dict) -> str | None:
    """The stages a wall-clock cap cut short, as shown on the variant's row (None: none)."""
    return ", ".join(s.get("capped") or []) or None


def compare_step(enc: Encoder, ds: AudioDataset, cfg: StudyConfig, summaries: dict):
    """Every variant measured the same way, latencies interleaved on the same clips."""
    def step(folder: Path) -> dict:
        if memo_of(enc) is not None:
            raise RuntimeError("compare must time the teacher's forward pass, not its memo")
        task = prepare_task(ds, cfg.task, seed=cfg.seed, max_clips=cfg.max_clips)
        waves = [ds.load(i) for i in task.splits["test"][: cfg.latency_clips]]
        head = ClassifierHead(enc.hidden_size, task.num_classes)  # timing only: same size as trained
        prune_s = summaries["prune"]
        t_acc = prune_s["teacher"]["test_accuracy"]
        L = enc.num_layers
        rows, fns = [], {}
        models = {"teacher": ("teacher", enc, None)}  # row → (kind, model, folder): int8 exports

        def enc_fn(e):
            return lambda w: head(*e.encode(w))

        rows.append({"variant": "teacher", "kind": "teacher", "layers": L,
                     "params": enc.num_params(), "stack_params": enc.num_params(stack_only=True),
                     "bytes": _encoder_bytes(enc), "accuracy": t_acc, "capacity": 1.0})
        fns["teacher"] = enc_fn(enc)
        for name, (strategy, deleted) in pruned_variants(prune_s).items():
            small = enc.without_layers(deleted)
            curve = prune_s["strategies"][strategy]["no_refit"]
            k = len(deleted)
            v = f"pruned: {name} (−{k})"
            rows.append({"variant": v, "kind": "pruned", "layers": L - k, "params": small.num_params(),
                         "stack_params": small.num_params(stack_only=True), "bytes": _encoder_bytes(small),
                         "accuracy": curve["test_accuracy"][k], "capacity": curve["capacity"][k]})
            fns[v] = enc_fn(small)
            models[v] = ("pruned", small, None)
        for name, s in summaries.get("mimic", {}).items():
            m = MimicModel.load(s["model_dir"])
            v = f"mimic: {name}"
            rows.append({"variant": v, "kind": "mimic", "layers": len(m.layers),
                         "params": m.num_params("front_end") + m.num_params("stack"),
                         "stack_params": m.num_params("stack"), "bytes": bytes_on_disk(s["model_dir"]),
                         "accuracy": s["accuracy"], "capacity": s["capacity"], "capped": _capped(s)})
            fns[v] = m
            models[v] = ("mimic", m, s["model_dir"])
        for name, s in summaries.get("share", {}).items():
            sh = load_shared(s["model_dir"])
            rep = sh.size_report()
            v = f"shared: {name}"
            decoder = Path(s["model_dir"]) / DECODER  # Whisper's decoder rides along; not counted
            dec_bytes = decoder.stat().st_size if decoder.is_file() else 0
            rows.append({"variant": v, "kind": "shared", "layers": sh.num_layers,
                         "params": rep["encoder_params"], "stack_params": rep["stack_params"],
                         "bytes": bytes_on_disk(s["model_dir"]) - dec_bytes,
                         "accuracy": s["accuracy"], "capacity": s["capacity"], "capped": _capped(s)})
            fns[v] = enc_fn(sh)
            models[v] = ("shared", sh, s["model_dir"])
        int8 = Int8Columns(enc, task, cfg, folder / "int8") if cfg.onnx else None
        if int8 is not None:
            fns.update(int8.prepare(rows, models))
        else:  # no exports of an earlier run left beside rows that do not have them
            shutil.rmtree(folder / "int8", ignore_errors=True)
        lat = interleaved_latency(fns, waves, repeats=5)
        wer = summaries.get("wer", {}).get("wer", {})
        wer_ci = summaries.get("wer", {}).get("interval", {})  # bootstrap 95% over clips
        translation = summaries.get("translate", {}).get("scores", {})
        for r in rows:
            r.update(lat[r["variant"]])
            r["speedup"] = lat["teacher"]["batch1_ms"] / r["batch1_ms"]
            r["stack_ratio"] = r["stack_params"] / rows[0]["stack_params"]
            r["wer"] = wer.get(row_key(r["variant"]))
            r["wer_ci95"] = wer_ci.get(row_key(r["variant"]))
            r.update(translation_columns(translation.get(row_key(r["variant"]))))
        if int8 is not None:
            int8.attach(rows, lat)
        write_json(folder / "variants.json", rows)
        return {"rows": rows, "latency_clips": len(waves), "threads": torch.get_num_threads(),
                "int8": int8.summary() if int8 is not None else {"skipped": "--no-onnx"}}
    return step
