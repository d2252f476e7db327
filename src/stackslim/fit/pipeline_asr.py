"""`stackslim fit MODEL DATA --task asr`: the Whisper model that transcribes most like its
teacher within a memory (and latency) budget.

    from stackslim.fit import FitConfig, run
    result = run("whisper-tiny.en", "synth-sentences", "runs/fit-asr",
                 FitConfig(task="asr", max_mb=12, epochs_budget=12, asr_clips=16, score_clips=8))

Steps (`fit.asr` has the formulas), the refusals first, before anything is written: a MODEL that
is not Whisper, no Whisper tokenizer, DATA without split=pool and split=eval clips, a budget
that no candidate meets (as for the word task: one line naming the smallest that could be).
Then, in the run folder:
1. The teacher's states of the held-out and recovery sentence clips in 30 s windows, once for
   all candidates; the deletion order by Block Influence on the held-out clips' states
   (`grid.bi_order`); the teacher's transcripts of the held-out clips (and, with
   --asr-weight, of the recovery clips); the teacher's eval WER against the references.
2. The fitting pruned and shared compositions (float and int8; mimic candidates are skipped,
   `asr.MIMIC_SKIPPED` says why), built and trained by the word task's successive halving
   within --epochs-budget (`search.halving`), recovered by distillation of the teacher's last
   state on the recovery clips, ranked by teacher-agreement WER on the held-out clips.
3. Every trained variant's eval WER against the references with its bootstrap 95% interval,
   written bytes and measured latency; the winner (the lowest agreement WER that fits, then
   fewer bytes) saved with the teacher's decoder and exported to ONNX.

Writes ``out/fit.json`` (last), ``out/pareto.png`` (eval WER against MB and ms),
``out/model/``, ``out/onnx/`` and ``out/config.json``.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict

from .. import runtime
from ..data import AudioDataset
from ..models import load_encoder
from ..models.base import Encoder
from ..prune.pipeline_asr import whisper_and_tokenizer
from ..run import start_run
from .asr import MIMIC_SKIPPED, AsrScorer, ends, sentence_clips, teacher_cache
from .config import FitConfig, FitError
from .grid import bi_order
from .steps import COMMAND, WRITES, FitResult, check_budget, finish, search_candidates
from .predict import Candidate


def run_asr(model: str | os.PathLike | Encoder, data: str | os.PathLike | AudioDataset,
            out: str | os.PathLike, cfg: FitConfig, *, progress: bool = True, force: bool = False,
            log=print, tokenizer=None) -> FitResult:
    """`stackslim fit --task asr` as a function (module docstring); `tokenizer` stands in for
    the model's own (a model given as an Encoder has no spec).

    Raises:
        FitError: a refusal of the module docstring, before anything is written.
    """
    t0 = time.monotonic()
    enc = (model if isinstance(model, Encoder) else load_encoder(model)).eval()
    whisper, tok = whisper_and_tokenizer(enc, model, tokenizer, FitError)
    clips = sentence_clips(data, cfg)
    account, lat = check_budget(enc, cfg)
    with start_run(COMMAND, out, cfg, model=model, data=data, writes=WRITES, force=force) as r:
        enc.to(runtime.choose_device(cfg.device))
        held = teacher_cache(enc, clips, "score", "all", progress)
        train = teacher_cache(enc, clips, "train", "last", progress)
        enc.cpu()
        order = bi_order(held)
        scorer = AsrScorer.build(whisper, tok, train, ends(held), clips, cfg.asr_weight, progress)
        del held
        # measured, not assumed: 0 when the candidates' decoding path reproduces the teacher's
        teacher = {**scorer.eval_wer(enc), "agreement_wer": scorer.score(enc, Candidate("prune")),
                   "bytes": account.predict(Candidate("prune")).bytes, "ms": lat.teacher_ms,
                   "num_layers": enc.num_layers}
        calib = clips.waves("train", pad=True)[: cfg.calib]
        rows, search, winner = search_candidates(enc, order, cfg, account, lat, scorer, None, calib,
                                                 progress, log)
        notes = [MIMIC_SKIPPED,
                 "ranked by teacher-agreement WER of the held-out split=pool clips (lower is "
                 "better); eval_wer: the eval clips against their references",
                 "latency: PyTorch float32 on this machine for float and int8 alike, the encoder "
                 "on a 1 s clip (unpadded), the decoder not counted"]
        result = FitResult(
            model=str(getattr(model, "name", model)), data=str(data), config=asdict(cfg),
            task={**clips.describe(), "mimic": "skipped"},
            budget={"max_mb": cfg.max_mb, "max_ms": cfg.max_ms or None,
                    "front_end_bytes": account.front_bytes()},
            latency_model=lat.to_json(), deletion_order=[i + 1 for i in order], teacher=teacher,
            candidates=list(rows.values()), search=search, winner=None, seconds=0.0, notes=notes)
        meta = {"task": "asr", "source_model": result.model}
        return finish(r, result, winner, rows, None, meta, cfg, t0)
