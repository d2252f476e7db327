"""Offline synthetic speech data sets, made with espeak-ng and flite (no download).

- ``synth-commands``: the 35 words of Speech Commands v0.02 spoken by 30 synthetic voices (18
  espeak-ng variant/pitch pairs, 12 flite voice/F0 settings) in three prosodic styles (neutral,
  excited, sad), several renditions each (random speed and pitch jitter). Every clip is trimmed
  of silence, peak-normalised to 0.9 and placed at a random offset in exactly 1 s at 16 kHz.
  Manifest columns: path, label (the word), speaker (voice id), style.
- ``synth-sentences``: transcribed everyday sentences. ``split=eval``: every sentence of
  :data:`~stackslim.data.sentences.EVAL_SENTENCES` spoken by flite ``rms``, ``slt`` and ``awb``
  (the voices Whisper transcribes best); ``split=pool``: other template sentences by the
  :func:`pool_voices` (no synthesiser model of an eval voice, at any pitch), for distillation:
  a student fitted on the pool is scored on sentences and voices it never heard. Manifest
  columns: path, label (transcript), speaker, split.
- ``synth-translate``: the German, French and Spanish sentences of
  :mod:`~stackslim.data.translate_sentences` with their English references, each spoken by three
  espeak-ng voices of its language (:data:`TRANSLATE_VOICES`), split by sentence (every 5th
  sentence ``eval``). Manifest columns: path, label (= source_text), language, source_text,
  reference_en, speaker, split.

A build writes into ``<out>.partial-<pid>`` and renames it to ``<out>`` only when complete, so a
killed build never looks finished; an existing ``<out>/manifest.csv`` means "built" and is kept.

Command: ``stackslim data synth synth-commands OUT`` (:func:`synth_main`).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .audio import SAMPLE_RATE, peak_normalize, trim_silence, write_wav
from ..errors import DataError
from .sentences import EVAL_SENTENCES, pool_sentences
from .translate_sentences import LANGUAGES, translation_pairs
from .tts import CLEAR_VOICES, COMMAND_VOICES, STYLES, Voice, check_tools, needs_sox, synthesize

COMMAND_WORDS = (
    "yes no up down left right on off stop go zero one two three four five six seven eight nine "
    "bed bird cat dog happy house marvin sheila tree wow backward forward follow learn visual"
).split()


# espeak-ng voices per language of synth-translate: the language's own voice and two male
# variants, spoken at TRANSLATE_RATE. On 8 German eval sentences whisper-base translated these
# best (BLEU 11-15 at rate 0.8; 4.5 at rate 1.0; 6-11 at 0.7; +f2 2.5); French and Spanish were
# poor with every variant tried (BLEU 1-5).
TRANSLATE_VOICES: dict[str, tuple[Voice, ...]] = {
    lang: tuple(Voice(f"espeak-{lang}" + (f"-{var}" if var else ""), "espeak",
                      lang + (f"+{var}" if var else ""), pitch)
                for var, pitch in (("", 50), ("m1", 40), ("m3", 45)))
    for lang in LANGUAGES
}
TRANSLATE_RATE = 0.8  # of espeak-ng's 165 words per minute: slower sentences translate better
HEADERS = {
    "synth-commands": ("path", "label", "speaker", "style"),
    "synth-sentences": ("path", "label", "speaker", "split"),
    "synth-translate": ("path", "label", "language", "source_text", "reference_en", "speaker",
                        "split"),
}
MANIFEST = "manifest.csv"  # a data set folder's manifest (datasets.from_csv reads it)
# each set's folder under <cache>/data: a new name whenever a set's recipe changes, so that a
# cache built by an older recipe is never read as the new one (synth-sentences v2: the pool no
# longer has the eval voices)
CACHE_FOLDERS = {"synth-commands": "synth-commands", "synth-sentences": "synth-sentences-v2",
                 "synth-translate": "synth-translate"}
DEFAULT_RENDITIONS = 2
DEFAULT_COMMAND_CLIPS = len(COMMAND_WORDS) * len(COMMAND_VOICES) * len(STYLES) * DEFAULT_RENDITIONS
DEFAULT_POOL_CLIPS = 600


@dataclass(frozen=True)
class Job:
    """One clip to synthesise (all its randomness is drawn up front, so results are ordered)."""

    text: str
    voice: Voice
    style: str
    rate: float  # speaking-rate multiplier (jitter)
    pitch: float  # pitch multiplier (jitter)
    offset: float  # position in the fixed-length window, 0..1 (commands only)
    rel_path: str
    row: tuple[str, ...]


def _speak(job: Job, tmp: Path, rate: float | None = None, text: str | None = None) -> np.ndarray:
    """Synthesise a job (optionally at another rate or with other text), silence trimmed."""
    rate = job.rate if rate is None else rate
    return synthesize(text or job.text, job.voice, tmp, job.style, rate, job.pitch)


def _command_clip(job: Job, tmp: Path, n: int = SAMPLE_RATE) -> np.ndarray:
    """A word in exactly ``n`` samples; spoken faster (up to 3 times) when it does not fit."""
    rate, wave = job.rate, _speak(job, tmp)
    for _ in range(3):
        if len(wave) <= 0.95 * n:
            break
        rate *= 1.1 * len(wave) / (0.95 * n)
        wave = _speak(job, tmp, rate)
    wave = peak_normalize(wave[:n], 0.9)
    out = np.zeros(n, dtype=np.float32)
    start = int(job.offset * (n - len(wave)))  # random placement, as in recorded keyword sets
    out[start : start + len(wave)] = wave
    return out


def _sentence_clip(job: Job, tmp: Path) -> np.ndarray:
    """A sentence with 0.2 s of silence either side, peak-normalised."""
    pad = np.zeros(int(0.2 * SAMPLE_RATE), dtype=np.float32)
    wave = _speak(job, tmp, text=job.text + ".")  # the full stop gives a sentence's prosody
    return np.concatenate([pad, peak_normalize(wave, 0.9), pad])


def _jitter(seed: int, *key: object) -> random.Random:
    """A random generator that depends only on the seed and the clip's identity."""
    return random.Random("|".join(map(str, (seed, *key))))


def command_jobs(n_clips: int, seed: int = 0) -> list[Job]:
    """The first ``n_clips`` clips of synth-commands, balanced over words, voices and styles.

    Rendition k covers every (word, voice, style) once, in a Latin-square order: round j gives
    word w the voice-style pair ``pairs[(j + w) % len(pairs)]``, so any prefix has every word
    within one clip of the others and many voices.
    """
    pairs = [(v, s) for v in COMMAND_VOICES for s in STYLES]
    random.Random(seed).shuffle(pairs)
    jobs: list[Job] = []
    k = 0
    while len(jobs) < n_clips:
        for j in range(len(pairs)):
            for w, word in enumerate(COMMAND_WORDS):
                voice, style = pairs[(j + w) % len(pairs)]
                r = _jitter(seed, word, voice.id, style, k)
                rel = f"{word}/{voice.id}_{style}_{k}.wav"
                rate, pitch, offset = r.uniform(0.88, 1.12), r.uniform(0.92, 1.08), r.random()
                row = (rel, word, voice.id, style)
                jobs.append(Job(word, voice, style, rate, pitch, offset, rel, row))
                if len(jobs) == n_clips:
                    return jobs
        k += 1
    return jobs


def pool_voices() -> tuple[Voice, ...]:
    """The voices of synth-sentences' pool: every command voice whose synthesiser model is not
    an eval voice's (flite ``rms``, ``slt`` and ``awb`` are left out at every pitch and warp), so
    that what is fitted on the pool is scored on voices it never heard."""
    held = {(v.engine, v.name) for v in CLEAR_VOICES}
    return tuple(v for v in COMMAND_VOICES if (v.engine, v.name) not in held)


def sentence_jobs(n_pool: int, seed: int = 0, n_eval: int | None = None) -> list[Job]:
    """Eval clips (each sentence by each clear voice, neutral) then ``n_pool`` pool clips
    (:func:`pool_voices` in turn)."""
    jobs = []
    for i, text in enumerate(EVAL_SENTENCES[:n_eval]):
        for v in CLEAR_VOICES:
            rel = f"eval/{v.id}/{i:04d}.wav"
            jobs.append(Job(text, v, "neutral", 1.0, 1.0, 0.0, rel, (rel, text, v.id, "eval")))
    voices = pool_voices()
    try:
        pool = pool_sentences(n_pool, seed)
    except ValueError as e:
        raise DataError(f"synth-sentences: {e}") from None
    for i, text in enumerate(pool):
        r = _jitter(seed, "pool", i)
        v, style = voices[i % len(voices)], r.choice(list(STYLES))
        rel = f"pool/{v.id}/{i:04d}.wav"
        rate, pitch = r.uniform(0.9, 1.1), r.uniform(0.92, 1.08)
        jobs.append(Job(text, v, style, rate, pitch, 0.0, rel, (rel, text, v.id, "pool")))
    return jobs


def translate_jobs(n_sentences: int | None = None) -> list[Job]:
    """Every sentence of each language (the first ``n_sentences``) by each voice of it, neutral."""
    jobs = []
    for lang in LANGUAGES:
        for pair in translation_pairs(lang, n_sentences):
            for v in TRANSLATE_VOICES[lang]:
                rel = f"{lang}/{v.id}/{pair.index:04d}.wav"
                row = (rel, pair.source_text, lang, pair.source_text, pair.reference_en, v.id,
                       pair.split)
                jobs.append(Job(pair.source_text, v, "neutral", TRANSLATE_RATE, 1.0, 0.0, rel,
                                row))
    return jobs


def _run_jobs(
    jobs: list[Job], folder: Path, make: Callable[[Job, Path], np.ndarray], workers: int, desc: str
) -> list[float]:
    """Synthesise all jobs into ``folder`` in parallel; returns each clip's speech seconds."""
    scratch = folder / ".tts"
    scratch.mkdir(parents=True, exist_ok=True)
    speech = [0.0] * len(jobs)

    def one(i: int) -> None:
        wave = make(jobs[i], scratch / f"{i}.wav")
        if not np.any(wave):
            raise DataError(f"{jobs[i].voice.id} produced silence for {jobs[i].text!r}")
        speech[i] = len(trim_silence(wave)) / SAMPLE_RATE
        write_wav(folder / jobs[i].rel_path, wave)

    # Threads suffice: the work is in the TTS subprocesses and in numpy, both outside the GIL.
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(jobs), desc=desc, unit="clip") as bar,
    ):
        futures = [pool.submit(one, i) for i in range(len(jobs))]
        try:
            for fut in as_completed(futures):
                fut.result()
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    shutil.rmtree(scratch, ignore_errors=True)
    return speech


def _remove_stale_partials(out: Path) -> None:
    """Delete ``<out>.partial-<pid>`` folders left by builds whose process no longer runs."""
    for p in out.parent.glob(f"{out.name}.partial-*"):
        try:
            os.kill(int(p.name.rsplit("-", 1)[1]), 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def build(
    name: str,
    out_dir: str | os.PathLike,
    n_clips: int | None = None,
    seed: int = 0,
    workers: int = 4,
    n_eval: int | None = None,
) -> Path:
    """Build a synthetic data set into ``out_dir`` (skipped when it is already complete).

    Args:
        name: ``synth-commands``, ``synth-sentences`` or ``synth-translate``.
        out_dir: the data set's folder; ``manifest.csv`` in it marks a finished build.
        n_clips: synth-commands: number of clips (default 6300: every word × voice × style
            twice); synth-sentences: number of pool clips (default 600); synth-translate: the
            first ``n_clips`` sentences of each language (default all).
        seed: seed of the jitter, placement and order; the same seed gives the same files.
        workers: parallel text-to-speech processes.
        n_eval: synth-sentences only: use the first ``n_eval`` evaluation sentences (default all).

    Returns:
        ``out_dir``.

    Raises:
        DataError: unknown name, missing TTS program, a non-empty ``out_dir`` without manifest.
    """
    out = Path(out_dir)
    if (out / MANIFEST).is_file():
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out}: exists but holds no {MANIFEST}; remove it or choose another folder"
        )
    if name == "synth-commands":
        n = DEFAULT_COMMAND_CLIPS if n_clips is None else int(n_clips)
        jobs, make = command_jobs(n, seed), _command_clip
    elif name == "synth-sentences":
        n = DEFAULT_POOL_CLIPS if n_clips is None else int(n_clips)
        jobs, make = sentence_jobs(n, seed, n_eval), _sentence_clip
    elif name == "synth-translate":
        jobs, make = translate_jobs(n_clips), _sentence_clip
    else:
        raise DataError(
            f"unknown synthetic data set {name!r} (choose {', '.join(HEADERS)})"
        )
    if not jobs:
        raise DataError(f"{name}: n_clips must be >= 1")
    tools = {j.voice.engine for j in jobs}
    check_tools(
        tools | {"sox"} if any(needs_sox(j.voice, j.style, j.pitch) for j in jobs) else tools
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        speech = _run_jobs(jobs, partial, make, workers, f"synth {name}")
        seconds = time.perf_counter() - t0
        voices = sorted({j.voice for j in jobs}, key=lambda v: v.id)
        info = {
            "name": name,
            "n_clips": len(jobs),
            "seed": seed,
            "workers": workers,
            "voices": [v.id for v in voices],
            "styles": sorted({j.style for j in jobs}),
            "speech_seconds": {
                "min": min(speech),
                "median": float(np.median(speech)),
                "max": max(speech),
            },
            "build_seconds": round(seconds, 2),
            "voice_settings": [asdict(v) for v in voices],
        }
        (partial / "build.json").write_text(json.dumps(info, indent=2))
        with open(partial / MANIFEST, "w", newline="", encoding="utf-8") as fh:  # last: the marker
            w = csv.writer(fh)
            w.writerow(HEADERS[name])
            w.writerows(j.row for j in jobs)
        if out.is_dir():
            out.rmdir()  # empty (checked above); rename cannot replace a folder with files
        os.rename(partial, out)
    except OSError:
        if (out / MANIFEST).is_file():  # a concurrent build finished first: use it
            return out
        raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone after the rename; leftovers otherwise
    print(
        f"[synth] {name}: {len(jobs)} clips, {len(info['voices'])} voices, "
        f"speech {info['speech_seconds']['min']:.2f}-{info['speech_seconds']['max']:.2f} s, "
        f"built in {seconds:.1f} s -> {out}"
    )
    return out


def synth_main(name: str, out: str | os.PathLike, n_clips: int | None = None, seed: int = 0) -> int:
    """CLI entry (``stackslim data synth NAME OUT``): build and print a summary; returns 0.

    Raises:
        DataError: as :func:`build` (the CLI prints its one-line message and exits non-zero).
    """
    if (Path(out) / MANIFEST).is_file():
        print(f"[synth] {name}: already built in {out} (delete the folder to rebuild)")
        return 0
    build(name, out, n_clips=n_clips, seed=seed)
    return 0
