"""The study's speech-translation step (multilingual Whisper teachers): BLEU and chrF into
English and same-language WER of the teacher and every compressed encoder with a Whisper decoder
path (pruned, mimic, shared), through the original decoder.

For each language of the translation set (`--translate-data`, default synth-translate: German,
French and Spanish) `--translate-clips` clips evenly spread over its eval split (different
sentences, every voice) are read by each
encoder (every clip padded to Whisper's 30 s window) and decoded greedily twice from the same
states (`evaluate.bleu.translation_scores`): with ``<|LANG|><|translate|>`` (sacrebleu corpus
BLEU and chrF2 against the English references) and ``<|LANG|><|transcribe|>`` (WER against the
source text after Whisper's BasicTextNormalizer). Each score comes per language and over all
clips, with a percentile bootstrap 95% interval over clips (`evaluate.bleu.score_table`).

An English-only teacher (whisper-tiny.en) has no language or task tokens: the step records why
it measured nothing and the study goes on.
"""
from __future__ import annotations

from pathlib import Path

from ..evaluate.bleu import score_table, translation_clips, translation_scores
from ..evaluate.wer import load_tokenizer
from ..models import Encoder
from ..models.transcribe import is_multilingual
from ..results import write_json
from .compare import whisper_variants

BOOTSTRAP = 1000  # resamples of each interval (sums of sentence statistics: a fraction of a second)
WER_NORMALISATION = ("Whisper's BasicTextNormalizer (lowercase; punctuation and symbols to spaces; "
                     "accents and digits kept)")


def translate_step(model: str, enc: Encoder, data: str, clips_per_language: int,
                   prune_summary: dict, mimic_summaries: dict, share_summaries: dict):
    """`step(folder) -> summary`: every encoder's scores (`scores[variant][lang | "all"]`, keys
    as in the `wer` step: ``teacher``, ``pruned:<strategies>``, ``mimic:<v>``, ``shared:<v>``);
    the transcripts and translations of every clip in ``folder/translate.json``."""
    def step(folder: Path) -> dict:
        whisper, tok = load_tokenizer(model)
        if whisper is None:
            return {"skipped": f"no Whisper decoder for {model}: {tok}"}
        if not is_multilingual(whisper):
            return {"skipped": f"{model} is an English-only Whisper model: it has no language or "
                               "task tokens to translate or transcribe other languages"}
        clips = translation_clips(data, split="eval", n_per_language=clips_per_language, spread=True)
        scores, outputs, sig = {}, {}, {}
        for name, e in whisper_variants(enc, prune_summary, mimic_summaries, share_summaries):
            res = translation_scores(e, whisper, tok, clips.waves, clips.languages,
                                     clips.references, sources=clips.sources)
            sig = {"bleu": res["bleu_signature"], "chrf": res["chrf_signature"]}
            scores[name] = score_table(res["hypotheses"], clips.references, clips.languages,
                                       res["transcripts"], clips.sources, n=BOOTSTRAP)
            outputs[name] = {"translations": res["hypotheses"], "transcripts": res["transcripts"]}
        langs = list(dict.fromkeys(clips.languages))
        first = {lang: clips.languages.index(lang) for lang in langs}
        write_json(folder / "translate.json", {
            "languages": clips.languages, "sources": clips.sources,
            "references": clips.references, "outputs": outputs, "scores": scores})
        return {"data": str(data), "clips_per_language": clips_per_language,
                "clips": len(clips.languages), "languages": langs, "signatures": sig,
                "wer_normalisation": WER_NORMALISATION,
                "interval": f"percentile bootstrap over clips, {BOOTSTRAP} resamples, 95%",
                "scores": scores,
                "references": {lang: clips.references[i] for lang, i in first.items()},
                "examples": {name: {lang: o["translations"][i] for lang, i in first.items()}
                             for name, o in outputs.items()}}
    return step
