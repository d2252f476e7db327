"""Settings of `stackslim fit` (one definition for the CLI and Python), and `FitError`.

    stackslim fit whisper-base synth-commands --out runs/fit20 --max-mb 20 --epochs-budget 45
    stackslim fit whisper-base synth-commands --out runs/fit10 --max-mb 10 --max-ms 40
    stackslim fit whisper-tiny.en synth-sentences --task asr --out runs/fit-asr --max-mb 12 \
        --asr-clips 16 --score-clips 8 --eval-clips 8 --epochs-budget 12

is `stackslim.fit.run("whisper-base", "synth-commands", "runs/fit20", FitConfig(max_mb=20,
epochs_budget=45))`.

`train` is the recovery of every candidate by distillation on the teacher's cached states:
`batch_size`, `lr`, `weight_decay`, `patience`, `seed` (also of the splits and the head). Its
`epochs` and `max_minutes` are not used: the search's epochs come from `epochs_budget`
(`search.round_epochs`) and `minutes` caps the whole search. Every option is checked here, so
a bad one fails before any model or data loads. `asr_clips`, `score_clips`, `eval_clips` and
`asr_weight` are read by `--task asr` only (`pipeline_asr`); `head_epochs` and `max_clips` by
the classification tasks only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import StackslimError
from ..runtime import DEVICE_HELP
from ..train import TrainConfig


class FitError(StackslimError):
    """A `stackslim fit` option or budget that cannot be used (one-line message)."""


def recovery_train() -> TrainConfig:
    """The default recovery settings of every candidate (`epochs` is not used by the search)."""
    return TrainConfig(epochs=1, lr=1e-4, batch_size=16, weight_decay=0.0, patience=100)


@dataclass(frozen=True)
class FitConfig:
    max_mb: float = field(default=0.0, metadata={"help": "memory budget: the encoder's stored "
                                                 "weights in MB (10^6 bytes): front end, stack "
                                                 "and final norm; the head and a Whisper decoder "
                                                 "are not counted (required)"})
    max_ms: float = field(default=0.0, metadata={"help": "latency budget: CPU milliseconds of "
                                                 "the encoder on a 1 s clip at batch 1, PyTorch, "
                                                 "this machine (0: none)"})
    epochs_budget: int = field(default=60, metadata={
        "help": "the search's budget: recovery epochs of all candidates together, over all "
                "rounds of the successive halving (each round gets an equal share of what is "
                "left, split among its survivors; candidates beyond what gives each one epoch "
                "in the first round are not trained)"})
    minutes: float = field(default=0.0, metadata={"help": "optional cap on the search in "
                                                  "wall-clock minutes (0: none; fit.json "
                                                  "records when it bites)"})
    sizes: tuple[float, ...] = field(default=(0.25, 0.5, 0.75), metadata={
        "help": "size fractions of the (pruned) stack tried by sharing"})
    widths: tuple[float, ...] = field(default=(0.25, 0.5, 1.0), metadata={
        "help": "widths of the mimic layer tried, as fractions of the hidden size"})
    group: int = field(default=3, metadata={"help": "layers per sharing group (adjacent)"})
    int8: bool = field(default=True, metadata={"help": "also try int8 weights of the stack's "
                                               "matrices (per-row scales)"})
    max_candidates: int = field(default=12, metadata={"help": "compositions trained in the first "
                                                      "round (the largest that fit, taken in turn "
                                                      "from each method)"})
    task: str = field(default="word", metadata={
        "help": "task of DATA: a classification task (word, ...), or asr: transcription by a "
                "Whisper MODEL of a sentences set with split=pool and split=eval clips (e.g. "
                "synth-sentences), candidates ranked by teacher-agreement WER"})
    asr_clips: int = field(default=16, metadata={
        "help": "--task asr: split=pool clips the candidates are recovered on (a seeded subset; "
                "each is a 30 s window: about 1 s of CPU per clip and pass on whisper-base)"})
    score_clips: int = field(default=8, metadata={
        "help": "--task asr: other split=pool clips, never trained on, that rank the candidates "
                "by teacher-agreement WER"})
    eval_clips: int = field(default=8, metadata={
        "help": "--task asr: split=eval clips transcribed against their references for every "
                "trained candidate's reported WER, evenly spread (0: all)"})
    asr_weight: float = field(default=0.0, metadata={
        "help": "--task asr: weight of the decoder loss (teacher-forced on the teacher's "
                "transcripts, share.asr) added to the distillation; 0: off (it is slow)"})
    max_clips: int = field(default=0, metadata={"help": "use a seeded subset of this many clips "
                                                "of DATA (0: all)"})
    head_epochs: int = field(default=30, metadata={"help": "epochs of the teacher's head"})
    calib: int = field(default=64, metadata={"help": "train clips that calibrate the sharing "
                                             "conversion (aware init; 0: plain SVD)"})
    onnx: bool = field(default=True, metadata={"help": "export the winner to ONNX (int8 too when "
                                               "it is an int8 candidate)"})
    device: str = field(default="auto", metadata={
        "help": f"where the teacher encodes the clips: {DEVICE_HELP}; the search runs on the CPU"})
    train: TrainConfig = field(default_factory=recovery_train, metadata={
        "help": "recovery of each candidate: --batch-size, --lr, --weight-decay, --patience, "
                "--seed (its epochs come from --epochs-budget)"})

    def __post_init__(self) -> None:
        if not self.max_mb > 0:
            raise FitError(f"--max-mb must be > 0 (the encoder's MB), got {self.max_mb}")
        if self.max_ms < 0:
            raise FitError(f"--max-ms must be >= 0 (0: no latency budget), got {self.max_ms}")
        if self.epochs_budget < 1:
            raise FitError(f"--epochs-budget must be >= 1, got {self.epochs_budget}")
        if self.minutes < 0:
            raise FitError(f"--minutes must be >= 0 (0: no cap), got {self.minutes}")
        if not self.sizes or not all(0 < s < 1 for s in self.sizes):
            raise FitError(f"--sizes must be fractions in (0, 1), got {self.sizes}")
        if not self.widths or not all(0 < w <= 4 for w in self.widths):
            raise FitError(f"--widths must be fractions in (0, 4], got {self.widths}")
        for name in ("group", "max_candidates", "head_epochs"):
            if getattr(self, name) < 1:
                raise FitError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.task == "asr" and (self.asr_clips < 1 or self.score_clips < 1):
            raise FitError(f"--asr-clips and --score-clips must be >= 1, got {self.asr_clips} "
                           f"and {self.score_clips}")
        if self.asr_weight < 0:
            raise FitError(f"--asr-weight must be >= 0, got {self.asr_weight}")
        for name in ("max_clips", "calib", "eval_clips"):
            if getattr(self, name) < 0:
                raise FitError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        t = self.train
        if not isinstance(t, TrainConfig):
            raise FitError(f"train must be a TrainConfig, got {type(t).__name__}")
        if t.batch_size < 1 or t.patience < 1:
            raise FitError("--batch-size and --patience must be >= 1")
        if t.max_minutes:
            raise FitError("train.max_minutes is not used by fit: --minutes caps the search")
        if not t.lr > 0 or t.weight_decay < 0:
            raise FitError("--lr must be > 0 and --weight-decay >= 0")
