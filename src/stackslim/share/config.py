"""Settings of `stackslim share` (one definition for the CLI and Python), and `ShareError`.

    stackslim share whisper-base synth-commands --out runs/share --group 3 --rank 16 --epochs 3
    stackslim share whisper-base synth-commands --out runs/aware --group 3 --rank 16 \\
        --init aware --align --calib 256 --max-minutes 8
    stackslim share whisper-base synth-commands --out runs/pool --group 3 --rank 16 \\
        --unlabelled synth-sentences --max-unlabelled 500

is `stackslim.share.run("whisper-base", "synth-commands", "runs/share", ShareConfig(group=3,
rank=16, train=TrainConfig(epochs=3, lr=1e-4, batch_size=16, weight_decay=0.0, patience=3)))`.

`train` is the recovery by distillation: `epochs` (0: no recovery), `batch_size` (clips per
step), `lr`, `weight_decay`, `patience`, `schedule`, `warmup`, `seed` (also the seed of the
splits, the teacher head and the conversion), and `max_minutes`, an optional wall-clock cap on
the whole recovery (0: none; ``all-then-last`` gives each phase half of it). Every option is
checked here, so a bad one fails before any model or data loads.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data.pool import MAX_UNLABELLED_HELP, UNLABELLED_HELP
from ..errors import StackslimError
from ..runtime import DEVICE_HELP
from ..train import TrainConfig
from ..train.loop import SCHEDULES
from .asr import SELECT
from .convert import INITS
from .inits import SHARE_MAPS
from .local import MODES as LOCAL_MODES

STATES = ("all", "last", "all-then-last")


class ShareError(StackslimError):
    """A `stackslim share` option that cannot be used (one-line message naming the flag)."""


def _recovery() -> TrainConfig:
    return TrainConfig(epochs=3, lr=1e-4, batch_size=16, weight_decay=0.0, patience=3)


@dataclass(frozen=True)
class ShareConfig:
    group: int = field(default=0, metadata={"help": "K, layers per group: with --groups adjacent "
                                            "runs of K adjacent layers (0: 3); with --groups blocks "
                                            "each block is cut into runs of at most K (0: whole blocks)"})
    groups: str = field(default="adjacent", metadata={"help": "how layers are grouped: 'adjacent', "
                                                      "'blocks' (measured, linear CKA), or explicit "
                                                      "0-based ranges such as '0-2,3-5,6-11'"})
    rank: int = field(default=16, metadata={"help": "rank r of each layer's low-rank residual A B"})
    size: float = field(default=0.0, metadata={"help": "a size budget instead of --rank: the shared "
                                               "stack's parameters as a fraction of the dense "
                                               "stack's, e.g. 0.5; ranks are then chosen per layer "
                                               "and map to keep the maps' outputs (0: use --rank)"})
    share_maps: str = field(default="all", metadata={"help": "which linear maps share: all six, "
                                                     "'ffn' (feed-forward only) or 'attention' "
                                                     "(the others stay dense)",
                                                     "choices": SHARE_MAPS})
    local_epochs: int = field(default=0, metadata={"help": "layer-wise reconstruction before the "
                                                   "recovery: epochs of fitting each group to its "
                                                   "teacher layers on cached states (0: none)"})
    local_lr: float = field(default=3e-4, metadata={"help": "learning rate of the layer-wise fit"})
    local_mode: str = field(default="sequential", metadata={
        "help": "inputs of each group's fit: 'sequential' (the student's own outputs of the "
                "groups before, fitted first) or 'parallel' (the teacher's states)",
        "choices": LOCAL_MODES})
    diag: bool = field(default=True, metadata={"help": "give each layer its own diagonal d"})
    share_norms: bool = field(default=False, metadata={"help": "one bias per map and one copy of "
                                                       "each LayerNorm per group (the paper's size "
                                                       "accounting; conversion is then not exact at "
                                                       "full rank)"})
    init: str = field(default="svd", metadata={"help": "conversion method: svd (group mean + "
                                               "truncated SVD of the residual) or aware (keeps "
                                               "each map's outputs on --calib clips: whitened "
                                               "SVD, shared weight chosen by output error)",
                                               "choices": ("svd", "aware")})
    align: bool = field(default=False, metadata={"help": "permute FFN neurons and attention heads "
                                                 "of each layer to match its group first (same "
                                                 "function, closer weights)"})
    calib: int = field(default=256, metadata={"help": "clips of the train split whose activations "
                                              "calibrate the conversion (init aware) and measure "
                                              "each map's output error (0: none)"})
    recover_states: str = field(default="all", metadata={"help": "distil hidden states 'all' "
                                                         "(1..L), the 'last' one, or "
                                                         "'all-then-last' (two phases, each with "
                                                         "half of --epochs and of --max-minutes)",
                                                         "choices": STATES})
    unlabelled: str = field(default="", metadata={"help": f"{UNLABELLED_HELP}; in the recovery "
                                                  "beside the train split (their teacher states "
                                                  "are cached: memory grows with them)"})
    max_unlabelled: int = field(default=0, metadata={"help": MAX_UNLABELLED_HELP})
    augment: int = field(default=0, metadata={"help": "augmented copies of each --unlabelled "
                                              "clip (speed 0.9/1.1, reverberation, noise at "
                                              "10-30 dB SNR; stackslim.data.augment) distilled "
                                              "on beside it; the held-out clips stay clean"})
    asr_weight: float = field(default=0.0, metadata={"help": "Whisper only: weight of the decoder "
                                                    "loss in the recovery (0: none): the original "
                                                    "decoder, teacher-forced on the teacher's own "
                                                    "transcripts of the --unlabelled clips, must "
                                                    "predict them from the student's states; those "
                                                    "clips are then kept whole and followed by "
                                                    "silence, as the WER check reads them, and a "
                                                    "tenth of them (at most 32) validates"})
    asr_top_k: int = field(default=1, metadata={"help": "with --asr-weight: the decoder's targets "
                                                "are the teacher decoder's K most likely tokens at "
                                                "each position, weighted by its probabilities "
                                                "(1: its greedy tokens only)"})
    asr_select: str = field(default="agreement", metadata={
        "help": "with --asr-weight: how the held-out clips pick the best recovery epoch: "
                "'agreement' (the teacher's tokens the decoder predicts, teacher-forced) or 'wer' "
                "(greedy transcripts against the teacher's: slower, closer to the WER check)",
        "choices": SELECT})
    task_weight: float = field(default=1.0, metadata={"help": "weight of the task loss (teacher's "
                                                      "head, frozen) in the recovery"})
    task: str = field(default="word", metadata={"help": "classification task of DATA (the head "
                                                "that measures accuracy)"})
    max_clips: int = field(default=0, metadata={"help": "use a seeded subset of this many clips "
                                                "of DATA (0: all)"})
    head_epochs: int = field(default=30, metadata={"help": "epochs of the teacher head"})
    block_clips: int = field(default=64, metadata={"help": "clips of the train split that measure "
                                                   "the blocks (--groups blocks)"})
    wer_data: str = field(default="synth-sentences", metadata={"help": "Whisper only: transcribed "
                                                               "data set for WER ('' to skip)"})
    wer_clips: int = field(default=60, metadata={"help": "Whisper only: clips of its eval split "
                                                  "transcribed (0: skip WER)"})
    latency_clips: int = field(default=8, metadata={"help": "clips timed for CPU latency (0: skip)"})
    device: str = field(default="auto", metadata={
        "help": f"where the teacher encodes the clips: {DEVICE_HELP}; conversion and recovery "
                "run on the CPU"})
    train: TrainConfig = field(default_factory=_recovery, metadata={
        "help": "the recovery: --epochs (0: none), --batch-size, --lr, --weight-decay, "
                "--patience, --schedule, --warmup, --seed (also of splits, head and conversion), "
                "--max-minutes (a cap on the whole recovery, 0: none)"})

    def __post_init__(self) -> None:
        if self.rank != "full" and (isinstance(self.rank, bool) or not isinstance(self.rank, int)
                                    or self.rank < 0):
            raise ShareError(f"--rank must be an integer >= 0, got {self.rank!r}")
        for name in ("group", "calib", "max_unlabelled", "augment", "max_clips", "wer_clips",
                     "latency_clips"):
            if getattr(self, name) < 0:
                raise ShareError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.size <= 1:
            raise ShareError(f"--size must be in (0, 1] (0: use --rank), got {self.size}")
        if self.share_maps not in SHARE_MAPS:
            raise ShareError(f"--share-maps must be one of {', '.join(SHARE_MAPS)}, got {self.share_maps!r}")
        if self.local_mode not in LOCAL_MODES:
            raise ShareError(f"--local-mode must be one of {', '.join(LOCAL_MODES)}, got {self.local_mode!r}")
        if self.local_epochs < 0:
            raise ShareError(f"--local-epochs must be >= 0, got {self.local_epochs}")
        if not self.local_lr > 0:
            raise ShareError(f"--local-lr must be > 0, got {self.local_lr}")
        for name in ("head_epochs", "block_clips", "asr_top_k"):
            if getattr(self, name) < 1:
                raise ShareError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.init not in INITS:
            raise ShareError(f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.recover_states not in STATES:
            raise ShareError(f"--recover-states must be one of {', '.join(STATES)}, "
                             f"got {self.recover_states!r}")
        if self.asr_select not in SELECT:
            raise ShareError(f"--asr-select must be one of {', '.join(SELECT)}, got {self.asr_select!r}")
        if self.asr_weight < 0:
            raise ShareError(f"--asr-weight must be >= 0, got {self.asr_weight}")
        if self.task_weight < 0:
            raise ShareError(f"--task-weight must be >= 0, got {self.task_weight}")
        if self.asr_weight > 0 and not self.unlabelled:
            raise ShareError("--asr-weight needs clips to transcribe: give --unlabelled SPEC")
        if self.init == "aware" and self.calib <= 0:
            raise ShareError("--init aware needs calibration clips: --calib N with N > 0")
        t = self.train
        if not isinstance(t, TrainConfig):
            raise ShareError(f"train must be a TrainConfig, got {type(t).__name__}")
        for name in ("epochs", "max_minutes", "weight_decay"):
            if getattr(t, name) < 0:
                raise ShareError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(t, name)}")
        for name in ("batch_size", "patience"):
            if getattr(t, name) < 1:
                raise ShareError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(t, name)}")
        if not t.lr > 0:
            raise ShareError(f"--lr must be > 0, got {t.lr}")
        if t.schedule not in SCHEDULES:
            raise ShareError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {t.schedule!r}")
        self.group_spec()  # --groups parses

    def group_spec(self):
        """(groups argument of `to_residual`, max_size) from `groups` and `group`."""
        if self.groups == "adjacent":
            return self.group or 3, None
        if self.groups == "blocks":
            return "blocks", self.group or None
        try:
            out = []
            for part in self.groups.split(","):
                a, _, b = part.strip().partition("-")
                out.append(list(range(int(a), int(b or a) + 1)))
            return out, None
        except ValueError:
            raise ShareError(f"--groups must be 'adjacent', 'blocks' or ranges like '0-2,3-5', "
                             f"got {self.groups!r}") from None
