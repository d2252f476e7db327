"""The study's page: `DIR/report.html`, self-contained, read top to bottom.

Every sentence under "Findings" is derived from the numbers in results.json by `findings()`;
nothing in the page is typed in by hand.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ..prune.config import PAPER_STRATEGIES as PAPER
from ..report import Page
from .config import share_budget
from .plots import plot_tradeoff

COLUMNS = [("variant", "Variant"), ("layers", "Layers"), ("params", "Encoder params"),
           ("stack_ratio", "Stack size vs teacher"), ("bytes", "Bytes on disk"),
           ("batch1_ms", "CPU ms/clip (batch 1)"), ("batched_ms", "CPU ms/clip (batched)"),
           ("speedup", "Speed-up (batch 1)"), ("accuracy", "Accuracy"), ("capacity", "Capacity"),
           ("wer", "WER"), ("wer_interval", "WER 95% interval")]
CAPPED = ("capped", "Training cut short by --max-minutes")
TRANSLATION = [("bleu", "BLEU → en"), ("chrf", "chrF → en"), ("wer_other", "WER % other languages")]
INT8_COLUMNS = [("variant", "Variant"), ("bytes", "Bytes, PyTorch"), ("int8_bytes", "Bytes, int8 ONNX"),
                ("size_ratio", "int8 size / PyTorch size"), ("batch1_ms", "CPU ms/clip, PyTorch (batch 1)"),
                ("int8_batch1_ms", "CPU ms/clip, int8 (batch 1)"), ("int8_batched_ms", "CPU ms/clip, int8 (batched)"),
                ("int8_speedup", "int8 speed-up over PyTorch (batch 1)"), ("float_accuracy", "Accuracy, float"),
                ("int8_accuracy", "Accuracy, int8"), ("change", "int8 − float (points)"),
                ("rel_error", "int8 relative error"), ("error", "Not measured: why")]


def int8_rows(rows: list[dict]) -> list[dict]:
    """One row per variant with int8 columns (`study.int8`), flattened for the report's table."""
    out = []
    for r in rows:
        q = r.get("int8")
        if not q:
            continue
        ok = q.get("error") is None
        out.append({"variant": r["variant"], "bytes": r["bytes"], "batch1_ms": r["batch1_ms"],
                    "int8_bytes": q.get("bytes"), "size_ratio": q.get("size_ratio"),
                    "int8_batch1_ms": q.get("batch1_ms"), "int8_batched_ms": q.get("batched_ms"),
                    "int8_speedup": q.get("speedup"), "float_accuracy": q.get("float_accuracy"),
                    "int8_accuracy": q.get("accuracy"),
                    "change": round(100 * q["accuracy_change"], 1) if ok else None,
                    "rel_error": q.get("rel_error"), "error": q.get("error")})
    return out


def _ci(row: dict, name: str, key: str | None = None) -> str:
    """"12.3 (8.1–16.0)": a score of a `score_table` row and its 95% interval."""
    v, (lo, hi) = row[key or name], row[f"{name}_ci95"]
    return f"{v:.1f} ({lo:.1f}–{hi:.1f})"


def _interval(ci: list | None) -> str | None:
    """"28.3–54.0%": a WER interval (fractions) as the table shows it (None: not measured)."""
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%" if ci else None


def translation_rows(r: dict) -> list[dict]:
    """One row per encoder and language (then "all") of the translate step, scores with intervals."""
    out = []
    for variant, table in (r.get("translate") or {}).get("scores", {}).items():
        for lang, row in table.items():
            out.append({"variant": variant, "language": lang, "clips": row["clips"],
                        "bleu": _ci(row, "bleu"), "chrf": _ci(row, "chrf"),
                        "wer": _ci(row, "wer", "wer_pct") if "wer_pct" in row else None,
                        "all": lang == "all"})
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def findings(r: dict) -> list[str]:
    """Plain statements derived from the measured numbers."""
    out = []
    an = r.get("analyze", {})
    cka = an.get("blocks", {}).get("cka")
    if cka:
        spans = ", ".join(f"{b[0]}–{b[-1]}" if len(b) > 1 else f"{b[0]}" for b in cka["blocks"])
        out.append(f"Linear CKA splits hidden states 1–{r['num_layers']} into {len(cka['blocks'])} "
                   f"block(s): {spans}.")
    if an.get("robustness"):
        out.append(f"Outlier channels: {an['robustness']}.")
    pr = r.get("prune")
    if pr:
        thr = pr["threshold"]
        t = pr["teacher"]["test_accuracy"]
        out.append(f"The teacher (frozen encoder + trained head) reaches {_pct(t)} test accuracy "
                   f"(chance {_pct(pr['task'].get('chance'))}).")
        names = list(pr.get("strategies", {}))
        paper_names = [k for k in names if k in PAPER]
        our_names = [k for k in names if k not in PAPER]
        compared = "; ".join(f"{who} {', '.join(ks)}" for who, ks in (("the paper's", paper_names),
                                                                     ("ours", our_names)) if ks)
        if compared:
            out.append(f"Pruning strategies compared: {compared}.")
        for variant, label in (("no_refit", "without post-training"), ("refit", "with only the head re-fitted")):
            d = pr["summary"].get(variant)
            if not d:
                continue
            best = max(d.values())
            ours = {k: v for k, v in d.items() if k not in PAPER}
            paper = {k: v for k, v in d.items() if k in PAPER}
            who = ", ".join(k for k, v in d.items() if v == best)
            msg = (f"Pruning {label}: at most {best} of {r['num_layers']} layers can go at ≥ "
                   f"{100 * thr:.0f}% capacity on test ({who}).")
            if ours and paper:
                msg += (f" Our best strategy deletes {max(ours.values())} ({_best(ours)}), the paper's "
                        f"best {max(paper.values())} ({_best(paper)}).")
            out.append(msg)
    rows = r.get("compare", {}).get("rows", [])
    for kind in ("mimic", "shared", "pruned"):
        cand = [x for x in rows if x["kind"] == kind]
        if not cand:
            continue
        b = max(cand, key=lambda x: (x["capacity"] or 0))
        out.append(f"Best {kind} variant by capacity: {b['variant']}: {_pct(b['capacity'])} capacity, "
                   f"stack at {_pct(b['stack_ratio'])} of the teacher's, {b['speedup']:.1f}× the "
                   f"teacher's speed at batch 1.")
    q = [x for x in rows if (x.get("int8") or {}).get("error") is None and x.get("int8")]
    if q:
        worst = min(q, key=lambda x: x["int8"]["accuracy_change"])
        out.append(f"onnxruntime int8: files {min(x['int8']['size_ratio'] for x in q):.2f}–"
                   f"{max(x['int8']['size_ratio'] for x in q):.2f}× the PyTorch bytes, "
                   f"{min(x['int8']['speedup'] for x in q):.1f}–{max(x['int8']['speedup'] for x in q):.1f}× "
                   f"PyTorch's speed at batch 1; the largest accuracy change "
                   f"{100 * worst['int8']['accuracy_change']:+.1f} points ({worst['variant']}).")
    failed = [x["variant"] for x in rows if (x.get("int8") or {}).get("error")]
    if failed:
        out.append(f"int8 export or measurement failed for: {', '.join(failed)} (reasons in the int8 table).")
    cut = [x["variant"] for x in rows if x.get("capped")]
    if cut:
        out.append(f"The wall-clock cap (--max-minutes {r['config'].get('max_minutes')}) cut training "
                   f"short for: {', '.join(cut)}; their numbers depend on this machine's speed and load.")
    tr = r.get("translate") or {}
    if tr.get("skipped"):
        out.append(f"Speech translation not measured: {tr['skipped']}.")
    elif tr.get("scores"):
        out.append(_translation_finding(tr))
    wer = r.get("wer", {}).get("wer")
    if wer:
        best = min((v, k) for k, v in wer.items() if k != "teacher") if len(wer) > 1 else None
        ci = r["wer"].get("interval", {})

        def said(k: str) -> str:
            return _pct(wer[k]) + (f" (95% interval {_interval(ci[k])})" if ci.get(k) else "")
        msg = f"Word error rate on {r['wer']['clips']} synth-sentences clips: teacher {said('teacher')}"
        if best:
            msg += f"; best compressed encoder {best[1]} {said(best[1])}"
        out.append(msg + ".")
    return out


def _translation_finding(tr: dict) -> str:
    """Teacher's BLEU per language and the best compressed encoder's share of it."""
    sc = tr["scores"]
    t = sc["teacher"]
    langs = [k for k in t if k != "all"]
    msg = (f"Speech translation into English on {tr['clips_per_language']} {tr['data']} eval clips "
           f"per language: the teacher reaches BLEU {t['all']['bleu']:.1f} ("
           + ", ".join(f"{k} {t[k]['bleu']:.1f}" for k in langs) + f"), chrF {t['all']['chrf']:.1f}")
    if "wer_pct" in t["all"]:
        msg += f", same-language WER {t['all']['wer_pct']:.1f}%"
    others = {k: v for k, v in sc.items() if k != "teacher"}
    if others and t["all"]["bleu"] > 0:
        name, b = max(others.items(), key=lambda kv: kv[1]["all"]["bleu"])
        msg += (f"; best compressed encoder {name}: BLEU {b['all']['bleu']:.1f} "
                f"({100 * b['all']['bleu'] / t['all']['bleu']:.0f}% of the teacher's)")
    return msg + "."


def _share_training(cfg: dict, family: str) -> str:
    """The shared variants' training in words, the auto knobs resolved for the teacher."""
    old = {"share_local_epochs": 0, "share_augment": 0}  # results written before these knobs
    b = share_budget(SimpleNamespace(**{**old, **cfg}), family == "whisper")
    copies = f" with {b.augment} augmented cop{'y' if b.augment == 1 else 'ies'} of each unlabelled clip"
    recovery = f"{b.recover_epochs} recovery epochs" if b.recover_epochs else "no end-to-end recovery"
    if not b.local_epochs:
        return recovery
    return f"{b.local_epochs} epochs of layer-wise fit{copies if b.augment else ''}, then {recovery}"


def _best(d: dict) -> str:
    """The strategies of `d` (name → deletable layers) that reach its maximum."""
    top = max(d.values())
    return ", ".join(k for k, v in d.items() if v == top)


def write_report(r: dict, out: Path) -> Path:
    cfg = r["config"]
    page = Page(f"stackslim study: {r['model']} on {r['data']}",
                f"{r['family']} encoder, {r['num_layers']} layers; task {cfg['task']}; "
                f"{r['clips_in_data']} clips in the data set ({cfg['max_clips']} used for training and "
                f"evaluation); stackslim {r['versions']['stackslim']}, torch {r['versions']['torch']}, "
                f"{r['versions']['cpus']} CPUs.")
    page.heading("Findings", "findings")
    page.bullets(findings(r), "findings")

    page.heading("Every variant side by side", "table")
    rows = [{**x, "wer_interval": _interval(x.get("wer_ci95"))} for x in r.get("compare", {}).get("rows", [])]
    page.table(rows, COLUMNS + (TRANSLATION if any("bleu" in x for x in rows) else [])
               + ([CAPPED] if any(x.get("capped") for x in rows) else []))
    if rows:
        thr = r.get("prune", {}).get("threshold", 0.95)
        page.images([(plot_tradeoff(rows, out / "tradeoff.png", thr),
                      "capacity against stack size and against speed-up, every variant")])
    page.paragraph(
        "Parameters count unique stored tensors of the encoder (front end + stack; a shared tensor once). "
        "Bytes: the encoder saved as safetensors (mimic: its saved folder, front end + layers + head; shared: "
        "its compact folder without the Whisper decoder it carries). Latency: "
        f"audio → logits on {r.get('compare', {}).get('latency_clips', '?')} test clips, median of 5 "
        "interleaved rounds after a warm-up (every variant once per round, in a new random order each "
        "round), "
        f"{r.get('compare', {}).get('threads', '?')} torch threads. Accuracy on the test split (speakers "
        "never seen in training); capacity = accuracy / the frozen-encoder teacher's accuracy on the same "
        "split. Pruned variants: each strategy's deletion count chosen on validation at ≥ 95% capacity, "
        "no post-training. WER: the original Whisper decoder reading each encoder's states. BLEU, chrF "
        "and WER of other languages: over all clips of the translation set (next section).", "note")

    q8 = int8_rows(rows)
    if q8:
        page.heading("What a device runs: onnxruntime int8", "int8")
        page.table(q8, INT8_COLUMNS if any(x["error"] for x in q8) else INT8_COLUMNS[:-1])
        info = r.get("compare", {}).get("int8", {})
        page.paragraph(
            "Each variant (the teacher, the pruned variant that deletes the most layers, every mimic and "
            "shared variant) exported by stackslim export (ONNX, int8 weights by onnxruntime's dynamic "
            "quantization; front end, stack and head in one graph) and run by onnxruntime on "
            f"{info.get('threads', '?')} thread(s). Bytes: model.int8.onnx against the PyTorch row's bytes "
            "above. Latency: audio → logits, timed in the same interleaved rounds and on the same clips as "
            "the PyTorch rows. Accuracy: the whole test split, the float PyTorch model and the int8 model "
            f"with one head (a mimic's own; otherwise {info.get('teacher_head', 'the teacher head')}), so "
            "the change is the cost of int8 alone; the float accuracy can differ from the table above, "
            "whose shared rows use their own step's head. Relative error: ||int8 − float|| / ||float|| of "
            "the last state on the export's parity clips.", "note")

    tr = r.get("translate") or {}
    if tr.get("scores") or tr.get("skipped"):
        page.heading("Speech translation and other languages", "translation")
    if tr.get("skipped"):
        page.paragraph(f"Not measured: {tr['skipped']}.", "note")
    elif tr.get("scores"):
        page.table(translation_rows(r), [("variant", "Encoder"), ("language", "Language"),
                                         ("clips", "Clips"), ("bleu", "BLEU → en (95% CI)"),
                                         ("chrf", "chrF → en (95% CI)"),
                                         ("wer", "WER % same language (95% CI)")], highlight="all")
        page.paragraph(
            f"{tr['clips_per_language']} eval clips per language of {tr['data']} (evenly spread: "
            "different sentences), each "
            "read by the encoder (padded to 30 s) and decoded greedily by the original Whisper "
            "decoder twice: into English (task translate; sacrebleu BLEU "
            f"{tr['signatures'].get('bleu', '')} and chrF {tr['signatures'].get('chrf', '')} against "
            "the English references) and in the spoken language (task transcribe; WER against the "
            f"source text after {tr['wer_normalisation']}). Intervals: {tr['interval']}. Few clips "
            "per language keep the study fast: the intervals say how far to trust a difference.",
            "note")

    page.heading("Layer similarity and blocks", "similarity")
    an = out / "analyze"
    page.images([(an / "heatmap_cka.png", "linear CKA (pooled, whole data set)"),
                 (an / "heatmap_cosine.png", "cosine"), (an / "heatmap_mknn.png", "mutual kNN (k = 8)")])
    bi = r.get("analyze", {}).get("block_influence", {})
    if bi:
        page.table([{"layer": i + 1, **{m: v[i] for m, v in bi.items()}}
                    for i in range(len(next(iter(bi.values()))))],
                   [("layer", "Layer"), ("cosine", "Block Influence (cosine)"),
                    ("mknn", "Block Influence (mutual kNN)")])

    page.heading("Pruning curves", "pruning")
    page.images([(out / "prune" / "pruning.png", "test accuracy against deleted layers, per strategy")])
    pr = r.get("prune")
    if pr:
        rows2 = [{"strategy": n, "family": s["family"], "order": " ".join(map(str, s["order"])),
                  "no_refit": pr["summary"].get("no_refit", {}).get(n),
                  "refit": pr["summary"].get("refit", {}).get(n)} for n, s in pr["strategies"].items()]
        page.table(rows2, [("strategy", "Strategy"), ("family", "From"), ("order", "Deletion order"),
                           ("no_refit", "Deletable, no post-training"), ("refit", "Deletable, head re-fitted")])

    page.heading("How this was measured", "method")
    page.bullets([
        "Similarity: stackslim analyze, pooled view (mean over valid frames), exact over "
        f"{r.get('analyze', {}).get('clips', '?')} clips in one streaming pass; blocks by exact dynamic-"
        "programming segmentation with BIC.",
        "Pruning: orders scored on the validation split only; curves on test.",
        f"Mimic: at most {cfg['mimic_epochs']} epochs per stage (MSE to the teacher, then the task), "
        f"early stopping on validation; shared variants: {_share_training(cfg, r['family'])}; "
        + (f"each training stage capped at {cfg['max_minutes']} minutes of wall clock (rows cut short "
           "by it say so)." if cfg.get("max_minutes") else "no wall-clock cap: training is counted in "
           "epochs alone, so the same seed trains the same models on a quiet or a busy machine."),
        f"Steps run now: {', '.join(r['steps_run']) or 'none'}; reused from an earlier run: "
        f"{', '.join(r['steps_skipped']) or 'none'}.",
    ])
    return page.write(out / "report.html")
