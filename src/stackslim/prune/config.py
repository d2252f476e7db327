"""The configuration of `stackslim prune`, and the error of stackslim.prune.

    stackslim prune whisper-base synth-commands --out runs/prune --task word \
        --strategies forward,backward,bi,knn-bi,iterative,greedy,blocks --threshold 0.95
    stackslim prune whisper-base synth-sentences --out runs/prune-asr --task asr --wer-margin 1
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import StackslimError
from ..train import TrainConfig


class PruneError(StackslimError):
    """Pruning inputs stackslim cannot use: an unknown strategy, a threshold outside (0, 1],
    a stack too short to prune, a folder that holds no pruned model (one-line message)."""


RECOVER = ("none", "local")
PAPER_STRATEGIES = ("forward", "backward", "bi", "knn-bi")
OUR_STRATEGIES = ("iterative", "greedy", "blocks", "greedy-refit", "beam", "beam-refit")
ALL_STRATEGIES = PAPER_STRATEGIES + OUR_STRATEGIES
DEFAULT_STRATEGIES = PAPER_STRATEGIES + ("iterative", "greedy", "blocks")
# --task asr has no head: the strategies that re-fit one have nothing to re-fit
ASR_STRATEGIES = PAPER_STRATEGIES + ("iterative", "greedy", "blocks", "beam")
ASR = "asr"


@dataclass(frozen=True)
class PruneConfig:
    """Layer deletion without retraining (Dorszewski et al. 2025), scored on validation only.

    Exact command with the defaults (one flag per field)::

        stackslim prune MODEL DATA --out DIR --task word \
            --strategies forward,backward,bi,knn-bi,iterative,greedy,blocks --threshold 0.95

    Layer 1 is never deleted (by any strategy): the deletable layers are 2..L.
    """

    task: str = field(default="word", metadata={
        "help": "what to classify: word (splits disjoint by speaker), speaker (disjoint by word), "
                "or any label column of the data set; or asr (Whisper only): deletions scored by "
                "the transcripts of the frozen original decoder, DATA a transcribed set with a "
                "split column (split=eval: the reported WER; the other clips but test and "
                "validation: the scored ones), e.g. synth-sentences"})
    strategies: tuple[str, ...] = field(default=DEFAULT_STRATEGIES, metadata={
        "help": f"deletion orders to evaluate, of: {', '.join(ALL_STRATEGIES)}"})
    threshold: float = field(default=0.95, metadata={
        "help": "capacity (accuracy / teacher accuracy) a pruned model must keep, in (0, 1]"})
    finetune: bool = field(default=False, metadata={
        "help": "teacher = encoder stack fine-tuned end to end with the head (else: frozen encoder, "
                "head trained on its last hidden state)"})
    own_head: bool = field(default=True, metadata={
        "help": "use the model's own head when the checkpoint has one (AutoModelForAudioClassification, "
                "wav2vec2 family) instead of training the paper's head"})
    refit: bool = field(default=True, metadata={
        "help": "also give the curves with only the head re-fitted after each deletion"})
    save_model: bool = field(default=True, metadata={"help": "write the best pruned model to DIR/model/"})
    max_clips: int | None = field(default=None, metadata={
        "help": "use a seeded random subset of this many clips (all when not given)"})
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=60, lr=1e-3, batch_size=32, patience=10),
        metadata={"help": "the teacher head's training: epochs, lr, patience; batch_size is also "
                          "the clips per forward pass, lr the rate of every head re-fit, seed that "
                          "of the splits, subsets and initialisation, max_minutes a wall-clock cap "
                          "on each training (head, fine-tuning; 0: none)"})
    refit_epochs: int = field(default=30, metadata={"help": "epochs of each head re-fit (warm start)"})
    finetune_epochs: int = field(default=3, metadata={"help": "epochs of end-to-end fine-tuning"})
    finetune_lr: float = field(default=5e-5, metadata={"help": "learning rate of fine-tuning"})
    finetune_layerdrop: float = field(default=0.5, metadata={
        "help": "LayerDrop while fine-tuning (--finetune): skip each layer but the first with this "
                "probability per step, so the fine-tuned stack keeps working when layers are deleted "
                "(0: plain fine-tuning, the paper's setting). Default 0.5: on whisper-base it is what "
                "lets 2 of 6 layers go without post-training (bench/results/prune.md)"})
    beam_width: int = field(default=8, metadata={
        "help": "deleted sets kept at each step by the beam and beam-refit strategies (with L-1 "
                "deletable layers, width C(L-1, ⌊(L-1)/2⌋) scores every set: 10 for 6 layers)"})
    knn_k: int = field(default=8, metadata={"help": "neighbours of the mutual-kNN Block Influence"})
    wer_margin: float = field(default=1.0, metadata={
        "help": "--task asr: WER points a pruned model may lose; a deletion passes when its "
                "transcripts of the scored clips differ from the teacher's by at most this WER"})
    asr_clips: int = field(default=40, metadata={
        "help": "--task asr: clips scored by agreement WER, a seeded subset of DATA's clips "
                "outside split=eval|test|validation"})
    eval_clips: int = field(default=120, metadata={
        "help": "--task asr: clips of DATA's split=eval transcribed for the reported WER, evenly "
                "spread (0: all)"})
    recover: str = field(default="none", metadata={
        "help": "--task asr: after the deletion, 'local' fits each kept layer to the teacher layer "
                "it stands for (layer-wise reconstruction on the scored clips' cached teacher "
                "states, sequential), then measures the eval WER again; 'none': no training",
        "choices": RECOVER})
    recover_epochs: int = field(default=20, metadata={"help": "epochs of the layer-wise fit (--recover local)"})
    recover_lr: float = field(default=3e-4, metadata={"help": "learning rate of the layer-wise fit"})
    cache_mb: int = field(default=2048, metadata={"help": "memory for re-used partial stack outputs (MB, per process)"})

    def __post_init__(self) -> None:
        if not (isinstance(self.wer_margin, (int, float)) and math.isfinite(self.wer_margin)
                and 0.0 <= self.wer_margin < 100.0):
            raise PruneError(f"--wer-margin must be a number of WER points in [0, 100), got {self.wer_margin}")
        if self.recover not in RECOVER:
            raise PruneError(f"--recover must be one of {', '.join(RECOVER)}, got {self.recover!r}")
        if self.recover != "none" and self.task != "asr":
            raise PruneError("--recover local is for --task asr (the word task re-fits its head)")
        if self.recover_epochs < 1 or not self.recover_lr > 0:
            raise PruneError(f"--recover-epochs must be >= 1 and --recover-lr > 0, got "
                             f"{self.recover_epochs} and {self.recover_lr}")
        if self.asr_clips < 1 or self.eval_clips < 0:
            raise PruneError(f"--asr-clips must be >= 1 and --eval-clips >= 0, got {self.asr_clips} "
                             f"and {self.eval_clips}")
        if not 0.0 < self.threshold <= 1.0:
            raise PruneError(f"threshold must lie in (0, 1], got {self.threshold}")
        strategies = tuple(self.strategies)
        if not strategies:
            raise PruneError(f"give at least one strategy, of: {', '.join(ALL_STRATEGIES)}")
        unknown = [s for s in strategies if s not in ALL_STRATEGIES]
        if unknown:
            raise PruneError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(ALL_STRATEGIES)}")
        if len(set(strategies)) != len(strategies):
            raise PruneError(f"strategy listed twice: {', '.join(strategies)}")
        object.__setattr__(self, "strategies", strategies)
        if self.task == ASR:
            other = [s for s in strategies if s not in ASR_STRATEGIES]
            if other:
                raise PruneError(f"--task asr has no head to re-fit: strategy {other[0]!r} is not "
                                 f"available; --task asr supports {', '.join(ASR_STRATEGIES)}")
            if self.finetune:
                raise PruneError("--finetune trains a classification head: not available with --task asr")
        t = self.train
        for name, value in (("batch_size", t.batch_size), ("epochs", t.epochs), ("refit_epochs", self.refit_epochs),
                            ("knn_k", self.knn_k), ("cache_mb", self.cache_mb), ("beam_width", self.beam_width)):
            if value < 1:
                raise PruneError(f"{name} must be >= 1, got {value}")
        if t.patience < 0:
            raise PruneError(f"patience must be >= 0, got {t.patience}")
        if self.finetune_epochs < 0 or t.max_minutes < 0 or self.finetune_lr <= 0 or t.lr <= 0:
            raise PruneError("fine-tuning epochs and max_minutes must be >= 0 and learning rates > 0")
        if self.finetune and self.finetune_epochs < 1:
            raise PruneError("finetune_epochs must be >= 1 with finetune")
        if not 0.0 <= self.finetune_layerdrop < 1.0:
            raise PruneError(f"finetune_layerdrop must lie in [0, 1), got {self.finetune_layerdrop}")
        if self.max_clips is not None and self.max_clips < 3:
            raise PruneError(f"max_clips must be >= 3 (one clip per split), got {self.max_clips}")
