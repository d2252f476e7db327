"""Speech translation and non-English transcription of whisper-base and its compressed encoders
on synth-translate.

Variants (only the encoder differs; the original decoder reads every one):

- ``teacher``: whisper-base.
- ``pruned -k``: the study's best pruning strategy (read from a study's results.json, default
  the committed default study of whisper-base: ``prune.best.strategy``) deleting its first k
  layers, k = 1 and 2, no post-training.
- ``shared``: `stackslim share` at `--size` of the stack (default 0.5: ranks allocated per layer
  and map, groups of 3 adjacent layers, activation-aware conversion), `--local-epochs` of
  layer-wise reconstruction, then recovery by distillation of the last state plus the decoder
  loss (weight 1) for ``--recover-epochs`` epochs (work, so the result does not depend on the
  machine's load; ``--recover-minutes`` is an optional wall-clock cap, recorded when it bites). Its unlabelled clips are
  ``--unlabelled`` (default ``synth-translate+synth-sentences``: the **train** split of
  synth-translate and English pool sentences, `--max-unlabelled` of each, whole sentences
  followed by silence), each decoded by the teacher with its own prompt (a German clip
  ``<|de|><|translate|>``, an English one ``<|en|><|transcribe|>``: `share.asr.row_prompts`),
  beside synth-commands' train split (the keyword head that `share` needs). The recovered
  model is materialised (dense weights W_shared + A B + diag(d), the same function) for the
  evaluation.

For each language (de, fr, es) the first N eval clips (default 30: 10 eval sentences × 3
espeak-ng voices) are read through each encoder (`evaluate.bleu.translation_scores`: every clip
padded to 30 s) and decoded greedily twice from the same states: ``<|LANG|><|translate|>``
(BLEU and chrF against the English references, sacrebleu) and ``<|LANG|><|transcribe|>`` (WER
against the source text, Whisper's BasicTextNormalizer). Every number has a percentile bootstrap
95% interval over clips (1000 resamples, `evaluate.bleu.score_table`).

    python bench/translate.py [--clips 30] [--threads 2] [--size 0.5] [--local-epochs 2] \\
        [--recover-epochs 3] [--recover-minutes 0] [--unlabelled synth-translate+synth-sentences] [--max-unlabelled 90] \\
        [--share-dir /tmp/stackslim-bench-translate-share]   # reused when it holds a model
        [--reuse [JSON ...]]   # keep variants measured on the same clips by earlier runs
        [--no-shared] [--no-pruned] [--name translate]

Writes bench/results/NAME.json (with every clip's translation and transcript) and NAME.md after
every variant, so a cut-short run keeps what it measured. Variants measured in separate
processes (e.g. `--no-shared --name translate-pruned` beside `--no-pruned`) are gathered by
`--reuse bench/results/translate.json bench/results/translate-pruned.json`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, set_threads, write_results

from stackslim import share
from stackslim.data import LANGUAGES
from stackslim.evaluate.bleu import score_table, translation_clips, translation_scores
from stackslim.models import load_encoder
from stackslim.models.transcribe import load_whisper
from stackslim.share.config import ShareConfig
from stackslim.share.load import load_shared

MODEL = "whisper-base"
ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "bench/results/study-default-whisper-base/results.json"


def _recovery_words(info: dict) -> str:
    """"3 recovery epochs, stopped by epochs", or "no end-to-end recovery" when none ran."""
    if not info.get("recovery_epochs"):
        return "no end-to-end recovery"
    return f"{info['recovery_epochs']} recovery epochs, stopped by {info.get('recovery_stopped_by', '?')}"


def _share_config(a: argparse.Namespace) -> ShareConfig:
    base = ShareConfig()
    return ShareConfig(group=3, size=a.size, init="aware", recover_states="last",
                       local_epochs=a.local_epochs, unlabelled=a.unlabelled, augment=a.augment,
                       max_unlabelled=a.max_unlabelled, asr_weight=a.asr_weight,
                       max_clips=a.max_clips, wer_clips=0, latency_clips=0,
                       train=replace(base.train, epochs=a.recover_epochs, max_minutes=a.recover_minutes))


def _shared(enc, folder: Path, a: argparse.Namespace) -> tuple[object, dict]:
    """The recovered shared encoder (reused from `folder` when it holds one), materialised,
    and its record."""
    cfg = _share_config(a)
    if not (folder / "share.json").is_file():
        share.run(enc, "synth-commands", folder, cfg, progress=True, force=True, spec=MODEL)
    r = json.loads((folder / "share.json").read_text())
    rec = r.get("recovery") or {}
    local = r.get("local") or {}
    info = {"stack_ratio": r["size"]["stack_ratio"], "groups": r["groups"],
            "command": f"stackslim share {MODEL} synth-commands --out DIR --group 3 --size {a.size} "
                       f"--init aware --local-epochs {a.local_epochs} --recover-states last "
                       f"--unlabelled {a.unlabelled} --max-unlabelled {a.max_unlabelled} "
                       + (f"--augment {a.augment} " if a.augment else "")
                       + f"--asr-weight {a.asr_weight} --max-clips {a.max_clips} --wer-clips 0 "
                       f"--latency-clips 0 --epochs {a.recover_epochs}"
                       + (f" --max-minutes {a.recover_minutes}" if a.recover_minutes else ""),
            "local_epochs": local.get("epochs_run"), "local_seconds": local.get("seconds"),
            "recovery_epochs": rec.get("epochs_run"), "recovery_stopped_by": rec.get("stopped_by"),
            "recovery_seconds": rec.get("seconds"), "recovery_data": rec.get("data"),
            "recovery_val_parts": rec.get("val_parts"),
            "kws_accuracy": {"teacher": r["teacher"]["accuracy"], "before": r["before"]["accuracy"],
                             "after": (r["after"] or {}).get("accuracy")},
            "share_seconds": r["seconds"]}
    return load_shared(folder / "model").materialize(), info


def _markdown(doc: dict) -> str:
    md = ["| encoder | stack % | language | clips | BLEU → en (95% CI) | BLEU % of teacher | "
          "chrF → en (95% CI) | WER % same language (95% CI) |",
          "|---|---:|---|---:|---:|---:|---:|---:|"]
    teacher = {r["language"]: r["bleu"] for r in doc["rows"] if r["encoder"] == "teacher"}
    for r in doc["rows"]:
        t = teacher.get(r["language"])
        rel = f"{100 * r['bleu'] / t:.0f}%" if t else "–"
        md.append(f"| {r['encoder']} | {100 * r['stack_ratio']:.1f} | {r['language']} | {r['clips']} | "
                  f"{r['bleu']:.1f} ({r['bleu_ci95'][0]:.1f}–{r['bleu_ci95'][1]:.1f}) | {rel} | "
                  f"{r['chrf']:.1f} ({r['chrf_ci95'][0]:.1f}–{r['chrf_ci95'][1]:.1f}) | "
                  f"{r['wer_pct']:.1f} ({r['wer_ci95'][0]:.1f}–{r['wer_ci95'][1]:.1f}) |")
    i = doc["inputs"]
    md += ["", f"whisper-base and compressed encoders read by the original decoder, synth-translate "
               f"eval split ({i['clips_per_language']} clips per language), greedy decoding, clips "
               f"padded to 30 s. BLEU `{i.get('bleu_signature')}`, chrF `{i.get('chrf_signature')}`; "
               f"WER after Whisper's BasicTextNormalizer; 95% intervals: percentile bootstrap over "
               f"clips. Pruned: {i['pruned']}. Shared: {i.get('shared', {}).get('command', '–')} "
               f"({_recovery_words(i.get('shared', {}))}). Command: `{doc['command']}`."]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=30, help="eval clips per language")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--study", default=str(STUDY), help="a study's results.json (pruning order)")
    ap.add_argument("--recover-epochs", type=int, default=3,
                    help="recovery epochs of the shared variant (the budget, counted in work)")
    ap.add_argument("--recover-minutes", type=float, default=0.0,
                    help="optional wall-clock cap of the shared variant's recovery (0: none)")
    ap.add_argument("--size", type=float, default=0.5, help="the shared stack's size budget")
    ap.add_argument("--local-epochs", type=int, default=2,
                    help="layer-wise reconstruction epochs before the recovery")
    ap.add_argument("--max-clips", type=int, default=300,
                    help="synth-commands clips (the keyword task that `share` needs)")
    ap.add_argument("--unlabelled", default="synth-translate+synth-sentences",
                    help="unlabelled sets of the shared variant's recovery ('+' joins)")
    ap.add_argument("--max-unlabelled", type=int, default=90,
                    help="clips of each unlabelled set in the shared variant's recovery")
    ap.add_argument("--augment", type=int, default=0,
                    help="augmented copies of each unlabelled clip in the fit and the recovery")
    ap.add_argument("--asr-weight", type=float, default=1.0,
                    help="decoder loss weight of the shared variant's recovery (0: states only; the "
                         "teacher then transcribes no clip, much faster)")
    ap.add_argument("--share-dir", default="/tmp/stackslim-bench-translate-share")
    ap.add_argument("--no-shared", action="store_true", help="skip the shared variant")
    ap.add_argument("--no-pruned", action="store_true", help="skip the pruned variants")
    ap.add_argument("--name", default="translate", help="results file name under bench/results")
    ap.add_argument("--reuse-only", action="store_true",
                    help="with --reuse: only gather, measure nothing (a variant not found is left out)")
    ap.add_argument("--language", default="", help="one language only (a part that --reuse joins)")
    ap.add_argument("--reuse", nargs="*", default=None,
                    help="keep the variants measured on the same clips by earlier runs (their "
                         "results JSON; default bench/results/translate.json)")
    a = ap.parse_args()
    set_threads(a.threads)
    enc = load_encoder(MODEL)
    model, tok = load_whisper(MODEL)
    L = enc.num_layers
    best = json.loads(Path(a.study).read_text())["prune"]
    strategy = best["best"]["strategy"]
    order = best["strategies"][strategy]["order"]  # 1-based layers in deletion order
    variants = [("teacher", lambda: enc, 1.0)]
    for k in () if a.no_pruned else (1, 2):
        deleted = sorted(i - 1 for i in order[:k])
        variants.append((f"pruned -{k} ({strategy}: layer {', '.join(str(i + 1) for i in deleted)})",
                         lambda d=deleted: enc.without_layers(d), (L - k) / L))
    doc = {"command": "python bench/translate.py " + " ".join(sys.argv[1:]), "machine": machine(),
           "inputs": {"data": "synth-translate (espeak-ng de/fr/es voices), split=eval",
                      "clips_per_language": a.clips, "model": MODEL, "decoding": "greedy, 64 tokens",
                      "window": "every clip padded to 30 s",
                      "pruned": f"the study's best strategy {strategy!r} (order {order}, from "
                                f"{Path(a.study).relative_to(ROOT) if Path(a.study).is_relative_to(ROOT) else a.study}), "
                                "first k layers deleted, no post-training",
                      "wer_normalisation": "Whisper BasicTextNormalizer (lowercase, punctuation and "
                                           "symbols to spaces, accents kept, digits kept)",
                      "interval": "percentile bootstrap over clips, 1000 resamples, 95%",
                      "seconds": {}},
           "units": {"bleu": "sacrebleu BLEU 0-100", "chrf": "sacrebleu chrF2 0-100",
                     "wer_pct": "% of reference words", "stack_ratio": "stack parameters / teacher's"},
           "rows": [], "examples": {}, "outputs": {}}
    old: dict = {"rows": [], "examples": {}, "outputs": {}, "inputs": {"seconds": {}}, "parts": {}}
    for path in ([] if a.reuse is None else a.reuse or [ROOT / "bench/results/translate.json"]):
        prev = json.loads(Path(path).read_text())
        if prev.get("inputs", {}).get("clips_per_language") != a.clips:
            continue
        langs = prev["inputs"].get("languages", list(LANGUAGES))
        if len(langs) == 1:  # one language's part: its clip outputs are joined below
            for name, o in prev.get("outputs", {}).items():
                old["parts"].setdefault(name, {})[langs[0]] = (o, prev["inputs"]["seconds"][name])
            langs = []
        have = {r["encoder"] for r in old["rows"]}
        old["rows"] += [r for r in prev["rows"] if r["encoder"] not in have and langs]
        for k in ("examples", "outputs"):
            old[k] = {**prev.get(k, {}), **old[k]}
        old["inputs"]["seconds"] = {**prev["inputs"]["seconds"], **old["inputs"]["seconds"]}
        for k in ("bleu_signature", "chrf_signature", "shared"):
            if k in prev["inputs"]:
                old["inputs"].setdefault(k, prev["inputs"][k])
    clips = translation_clips("synth-translate", split="eval", n_per_language=a.clips,
                              languages=[a.language] if a.language else None)
    doc["inputs"]["languages"] = list(dict.fromkeys(clips.languages))
    if not a.no_shared:
        def shared_variant():
            t0 = time.perf_counter()
            sh, info = _shared(enc, Path(a.share_dir), a)
            doc["inputs"]["shared"] = info
            doc["inputs"]["seconds"]["share_run"] = round(time.perf_counter() - t0, 1)
            return sh
        trained = f"recovered on {a.unlabelled} train" if a.recover_epochs else f"fitted on {a.unlabelled} train"
        variants.insert(1, (f"shared {a.size:g} (aware, local fit, {trained})",
                            shared_variant, None))
    for name, make, ratio in variants:
        kept = [r for r in old["rows"] if r["encoder"] == name]
        if kept:  # measured on the same clips by an earlier run (--reuse)
            doc["rows"] += kept
            doc["examples"][name] = old["examples"][name]
            doc["inputs"]["seconds"][name] = old["inputs"]["seconds"][name]
            if name in old["outputs"]:
                doc["outputs"][name] = old["outputs"][name]
            for k in ("bleu_signature", "chrf_signature", "shared"):
                if k in old["inputs"] and (k != "shared" or name.startswith("shared")):
                    doc["inputs"][k] = old["inputs"][k]
            continue
        parts = old["parts"].get(name, {})
        if set(doc["inputs"]["languages"]) <= set(parts):  # measured language by language
            res = {"hypotheses": [], "transcripts": []}
            for lang in doc["inputs"]["languages"]:  # clips come language by language
                res["hypotheses"] += parts[lang][0]["translations"]
                res["transcripts"] += parts[lang][0]["transcripts"]
            doc["inputs"]["seconds"][name] = round(sum(t for _, t in parts.values()), 1)
            if ratio is None:
                doc["inputs"]["shared"] = old["inputs"]["shared"]
                ratio = doc["inputs"]["shared"]["stack_ratio"]
            for k in ("bleu_signature", "chrf_signature"):
                doc["inputs"][k] = old["inputs"][k]
        elif a.reuse_only:
            continue
        else:
            e = make()
            ratio = ratio if ratio is not None else doc["inputs"]["shared"]["stack_ratio"]
            t0 = time.perf_counter()
            res = translation_scores(e, model, tok, clips.waves, clips.languages, clips.references,
                                     sources=clips.sources)
            doc["inputs"]["seconds"][name] = round(time.perf_counter() - t0, 1)
            doc["inputs"]["bleu_signature"] = res["bleu_signature"]
            doc["inputs"]["chrf_signature"] = res["chrf_signature"]
        table = score_table(res["hypotheses"], clips.references, clips.languages,
                            res["transcripts"], clips.sources)
        for lang, row in table.items():
            doc["rows"].append({"model": MODEL, "encoder": name, "stack_ratio": round(ratio, 4),
                                "language": lang, "clips": row["clips"],
                                **{k: (round(v, 2) if isinstance(v, float) else [round(x, 2) for x in v])
                                   for k, v in row.items() if k != "clips"}})
        doc["examples"][name] = {
            lang: [{"source": clips.sources[i], "reference_en": clips.references[i],
                    "translation": res["hypotheses"][i], "transcript": res["transcripts"][i]}
                   for i in [j for j, x in enumerate(clips.languages) if x == lang][:2]]
            for lang in LANGUAGES}
        doc["outputs"][name] = {"translations": res["hypotheses"], "transcripts": res["transcripts"]}
        write_results(a.name, doc, _markdown(doc))
        print(_markdown(doc), flush=True)
    write_results(a.name, doc, _markdown(doc))  # also when every variant was reused


if __name__ == "__main__":
    main()
