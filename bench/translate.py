"""Speech translation and non-English transcription of the whisper-base teacher on synth-translate.

For each language (de, fr, es) the first N eval clips (default 30: 10 eval sentences × 3 espeak-ng
voices) are read by whisper-base's encoder through the variant path (`evaluate.bleu.
translation_scores`: every clip padded to 30 s) and decoded greedily twice from the same states:
with ``<|LANG|><|translate|>`` (BLEU and chrF against the English references, sacrebleu) and with
``<|LANG|><|transcribe|>`` (WER against the source text, Whisper's BasicTextNormalizer). Each
number has a percentile bootstrap 95% interval over clips (1000 resamples).

    python bench/translate.py [--clips 30] [--threads 2]

Writes bench/results/translate.json and translate.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, set_threads, write_results

from stackslim.data import LANGUAGES
from stackslim.evaluate.bleu import (
    bootstrap_interval,
    corpus_bleu,
    corpus_chrf,
    multilingual_wer,
    translation_clips,
    translation_scores,
)
from stackslim.models import load_encoder
from stackslim.models.transcribe import load_whisper

MODEL = "whisper-base"


def _ci(fn, hyps, refs):
    lo, hi = bootstrap_interval(fn, hyps, refs)
    return [round(lo, 2), round(hi, 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=30, help="eval clips per language")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    set_threads(a.threads)
    enc = load_encoder(MODEL)
    model, tok = load_whisper(MODEL)
    clips = translation_clips("synth-translate", split="eval", n_per_language=a.clips)
    t0 = time.perf_counter()
    res = translation_scores(enc, model, tok, clips.waves, clips.languages, clips.references,
                             sources=clips.sources)
    seconds = time.perf_counter() - t0
    bleu = lambda h, r: corpus_bleu(h, r)["score"]
    chrf = lambda h, r: corpus_chrf(h, r)["score"]
    wer = lambda h, r: 100 * multilingual_wer(r, h)
    rows, examples = [], {}
    for lang in [*LANGUAGES, "all"]:
        ix = [i for i, x in enumerate(clips.languages) if lang in ("all", x)]
        h = [res["hypotheses"][i] for i in ix]
        t = [res["transcripts"][i] for i in ix]
        r = [clips.references[i] for i in ix]
        s = [clips.sources[i] for i in ix]
        rows.append({"model": MODEL, "encoder": "teacher", "language": lang, "clips": len(ix),
                     "bleu": round(bleu(h, r), 2), "bleu_ci95": _ci(bleu, h, r),
                     "chrf": round(chrf(h, r), 2), "chrf_ci95": _ci(chrf, h, r),
                     "wer_pct": round(wer(t, s), 2), "wer_ci95": _ci(wer, t, s)})
        if lang != "all":
            examples[lang] = [{"source": s[k], "reference_en": r[k], "translation": h[k],
                               "transcript": t[k]} for k in range(min(3, len(ix)))]
    doc = {
        "command": "python bench/translate.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "inputs": {"data": "synth-translate (espeak-ng de/fr/es voices, rate 0.8), split=eval",
                   "clips_per_language": a.clips, "model": MODEL, "decoding": "greedy, 64 tokens",
                   "window": "every clip padded to 30 s",
                   "bleu_signature": res["bleu_signature"], "chrf_signature": res["chrf_signature"],
                   "wer_normalisation": "Whisper BasicTextNormalizer (lowercase, punctuation and "
                                        "symbols to spaces, accents kept, digits kept)",
                   "interval": "percentile bootstrap over clips, 1000 resamples, 95%",
                   "seconds": round(seconds, 1)},
        "units": {"bleu": "sacrebleu BLEU 0-100", "chrf": "sacrebleu chrF2 0-100",
                  "wer_pct": "% of reference words"},
        "rows": rows,
        "examples": examples,
    }
    md = ["| language | clips | BLEU → en (95% CI) | chrF → en (95% CI) | WER % same language (95% CI) |",
          "|---|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['language']} | {r['clips']} | {r['bleu']:.1f} ({r['bleu_ci95'][0]:.1f}–"
                  f"{r['bleu_ci95'][1]:.1f}) | {r['chrf']:.1f} ({r['chrf_ci95'][0]:.1f}–"
                  f"{r['chrf_ci95'][1]:.1f}) | {r['wer_pct']:.1f} ({r['wer_ci95'][0]:.1f}–"
                  f"{r['wer_ci95'][1]:.1f}) |")
    md.append("")
    md.append(f"whisper-base teacher, synth-translate eval split ({a.clips} clips per language), "
              f"greedy decoding, clips padded to 30 s. BLEU `{res['bleu_signature']}`, chrF "
              f"`{res['chrf_signature']}`; WER after Whisper's BasicTextNormalizer. "
              f"Command: `{doc['command']}`.")
    write_results("translate", doc, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
