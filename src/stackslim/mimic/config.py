"""Configuration of a mimic run (one definition for the CLI flags and Python callers).

Command::

    stackslim mimic whisper-base synth-commands --out runs/mimic \\
        --kind linear --layers 1 --hidden 512 --unlabelled synth-sentences
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..data.pool import MAX_UNLABELLED_HELP, UNLABELLED_HELP
from ..errors import StackslimError
from ..runtime import DEVICE_HELP
from ..train import TrainConfig
from .augment import FeatureMask
from .layers import KINDS


class MimicError(StackslimError):
    """A mimic option or saved mimic model that cannot be used (one-line message)."""


@dataclass(frozen=True)
class MimicConfig:
    """Mimicking layers replacing a speech encoder's stack, trained in two stages.

    Stage 1: MSE of every frame to the teacher's hidden states (no labels: the train split plus
    `unlabelled`). Stage 2: cross-entropy through the teacher's head, head and mimic layers
    trained, early stopping on validation accuracy. `baseline` skips stage 1 (the paper's
    "non-mimicker": random mimic layers trained on the task only).

    Command: ``stackslim mimic MODEL DATA --out DIR --kind linear --layers 1 --hidden 512``
    """

    kind: str = field(default="linear", metadata={
        "help": "mimicking layer: frame-wise bottleneck MLP or one Transformer encoder layer",
        "choices": KINDS})
    layers: int = field(default=1, metadata={
        "help": "number of mimicking layers; with 2 the first mimics the end of the first block",
        "choices": (1, 2)})
    hidden: int = field(default=512, metadata={
        "help": "z: bottleneck width (linear) or feed-forward size (transformer)"})
    heads: int = field(default=0, metadata={
        "help": "attention heads of the transformer kind (0: the teacher's number of heads)"})
    positions: bool = field(default=False, metadata={
        "help": "add the family's positional encoding before the mimic layers (the paper: no)"})
    boundary: int = field(default=0, metadata={
        "help": "hidden state the first of 2 layers mimics (0: end of the first block found by "
                "stackslim.similarity; round(2L/3) if no block boundary is found)"})
    block_clips: int = field(default=256, metadata={
        "help": "train clips used to find the blocks (2 layers, boundary 0)"})
    baseline: bool = field(default=False, metadata={
        "help": "non-mimicker baseline: skip stage 1, train random mimic layers on the task"})
    task: str = field(default="word", metadata={
        "help": "task column to classify (word, speaker, ...), or 'asr' (Whisper only): train on "
                "the data set's split=pool sentences to feed the teacher's decoder, WER on its "
                "split=eval sentences"})
    max_clips: int = field(default=0, metadata={
        "help": "seeded subset of the data set for quick runs (0: every clip)"})
    unlabelled: str = field(default="", metadata={"help": f"{UNLABELLED_HELP}; in stage 1"})
    max_unlabelled: int = field(default=0, metadata={"help": MAX_UNLABELLED_HELP})
    distill: float = field(default=0.0, metadata={
        "help": "stage 2 weight of the KL to the teacher's logits (0: labels only; > 0 also "
                "trains on the unlabelled windows)"})
    temperature: float = field(default=2.0, metadata={"help": "distillation temperature"})
    mask_time: float = field(default=0.0, metadata={
        "help": "training: longest time mask as a fraction of a clip (2 masks per clip; 0: none)"})
    mask_channels: float = field(default=0.0, metadata={
        "help": "training: probability of zeroing each input feature channel (0: none)"})
    bf16: bool = field(default=False, metadata={
        "help": "train with bfloat16 autocast on the CPU (about 2x faster on CPUs with AMX/AVX512-BF16; "
                "evaluation stays float32)"})
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=30, lr=1e-3, batch_size=32, patience=5),
        metadata={"help": "stage 1 (MSE) training: epochs and lr are stage 1's; batch_size (clips "
                          "per step), weight_decay, schedule, warmup, patience, seed (split, init, "
                          "shuffling) and max_minutes (a wall-clock cap per stage, 0: none) hold "
                          "for stage 2 too"})
    task_epochs: int = field(default=30, metadata={"help": "stage 2 (task loss) maximum epochs"})
    asr_weight: float = field(default=1.0, metadata={
        "help": "--task asr, stage 2: weight of the decoder loss (teacher-forced cross-entropy of "
                "the teacher's transcripts) added to the stage-1 loss"})
    window: float = field(default=0.0, metadata={
        "help": "--task asr: seconds each training sentence is padded to with silence (0: "
                "max(6 s, clip + 3.5 s); 30: Whisper's own window, about 5x the cost); WER is "
                "always measured in the 30 s window. whisper-tiny.en repeats itself on about 1 "
                "synth sentence in 5 at 6 s, which spoils its transcripts as targets: 10 s does not"})
    eval_clips: int = field(default=0, metadata={
        "help": "--task asr: eval sentences transcribed for WER, evenly spread (0: all)"})
    task_lr: float = field(default=3e-4, metadata={"help": "stage 2 AdamW learning rate"})
    head_epochs: int = field(default=30, metadata={"help": "teacher head maximum epochs"})
    encode_batch: int = field(default=16, metadata={"help": "clips per teacher forward when caching"})
    latency_batch: int = field(default=8, metadata={"help": "clips in the batched latency measurement"})
    latency_repeats: int = field(default=7, metadata={"help": "timed repeats per latency measurement"})
    device: str = field(default="auto", metadata={
        "help": f"where the teacher encodes the clips: {DEVICE_HELP}; training runs on the CPU"})

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MimicError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.layers not in (1, 2):
            raise MimicError(f"--layers must be 1 or 2, got {self.layers}")
        t = self.train
        values = {**{n: getattr(self, n) for n in (
            "hidden", "heads", "boundary", "block_clips", "max_clips", "max_unlabelled", "task_epochs",
            "head_epochs", "encode_batch", "latency_batch", "latency_repeats", "eval_clips")},
            "batch_size": t.batch_size, "epochs": t.epochs, "patience": t.patience}
        for name in ("hidden", "batch_size", "encode_batch", "latency_batch", "latency_repeats",
                     "block_clips"):
            if values[name] < 1:
                raise MimicError(f"--{name.replace('_', '-')} must be >= 1, got {values[name]}")
        for name in ("heads", "boundary", "max_clips", "max_unlabelled", "epochs", "task_epochs",
                     "head_epochs", "patience", "eval_clips"):
            if values[name] < 0:
                raise MimicError(f"--{name.replace('_', '-')} must be >= 0, got {values[name]}")
        if t.lr <= 0 or self.task_lr <= 0:
            raise MimicError("learning rates must be > 0")
        if not 0.0 <= self.distill <= 1.0:
            raise MimicError(f"--distill must lie in [0, 1], got {self.distill}")
        if self.temperature <= 0:
            raise MimicError(f"--temperature must be > 0, got {self.temperature}")
        if not (0.0 <= self.mask_time < 1.0 and 0.0 <= self.mask_channels < 1.0):
            raise MimicError("--mask-time and --mask-channels must lie in [0, 1)")
        if self.asr_weight < 0:
            raise MimicError(f"--asr-weight must be >= 0, got {self.asr_weight}")
        if not (self.window == 0 or 0 < self.window <= 30):
            raise MimicError(f"--window must be 0 or lie in (0, 30] seconds, got {self.window}")
        if t.max_minutes < 0:
            raise MimicError(f"--max-minutes must be >= 0, got {t.max_minutes}")

    def feature_mask(self) -> FeatureMask:
        return FeatureMask(time_frac=self.mask_time, channel_frac=self.mask_channels)

    def stage1(self) -> TrainConfig:
        """Stage 1 (MSE): `train` itself."""
        return self.train

    def stage2(self) -> TrainConfig:
        """Stage 2 (task loss): `train` with the stage's epochs and learning rate."""
        return replace(self.train, epochs=self.task_epochs, lr=self.task_lr)

    def head(self) -> TrainConfig:
        """The teacher head: its epochs, the default learning rate, no time cap."""
        t = self.train
        return TrainConfig(epochs=self.head_epochs, batch_size=t.batch_size, patience=t.patience, seed=t.seed)
