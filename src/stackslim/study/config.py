"""The configuration of `stackslim study`, its quick preset, and its errors.

    stackslim study                                    # whisper-base on synth-commands
    stackslim study --quick                            # the same steps, smaller
    stackslim study random:wavlm DATA --quick --out runs/q

Training is counted in work: `mimic_epochs` per mimic stage, `recover_epochs` per shared
variant, so that the same command gives the same numbers on a quiet or a busy machine;
`max_minutes` is only an optional wall-clock cap per training stage, recorded on the variant's
row when it cuts training short. Every option is checked here, before any model or data loads.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import NamedTuple

from ..errors import StackslimError
from ..mimic.layers import KINDS
from ..prune.config import ALL_STRATEGIES


class StudyError(StackslimError):
    """A study option that cannot be used (one-line message naming the option)."""


DEFAULT_STRATEGIES = ("forward", "backward", "bi", "knn-bi", "iterative", "greedy", "blocks",
                      "greedy-refit", "beam", "beam-refit")


# the shared variants' training for a Whisper teacher, where the auto (-1) knobs resolve to
# these: a layer-wise fit on sentences and one augmented copy of each keeps the decoder reading
# (whisper-base at 50% of the stack: 37% WER against 91% for end-to-end distillation, and an
# end-to-end pass after the fit made it worse: bench/results/asr-base.md)
WHISPER_SHARE = {"local_epochs": 6, "augment": 1, "recover_epochs": 0}
OTHER_SHARE = {"local_epochs": 0, "augment": 0, "recover_epochs": 3}  # the other families'


@dataclass(frozen=True)
class StudyConfig:
    """What the study runs. `--quick` shrinks every knob left at its default (see `preset`).

    Exact command with the defaults::

        stackslim study whisper-base synth-commands --out runs/study --task word \\
            --mimic-epochs 30 --recover-epochs 3 --seed 0
    """

    task: str = field(default="word", metadata={"help": "task of the data set: word, speaker, or a column"})
    quick: bool = field(default=False, metadata={"help": "small preset: every step smaller"})
    max_clips: int = field(default=1500, metadata={"help": "clips (all splits) for teacher, pruning, mimic, share"})
    analyze_clips: int = field(default=1500, metadata={
        "help": "clips of the study's own (at most --max-clips) for the similarity matrices"})
    strategies: tuple[str, ...] = field(default=DEFAULT_STRATEGIES, metadata={
        "help": f"pruning strategies, of: {', '.join(ALL_STRATEGIES)}"})
    mimic_grid: tuple[str, ...] = field(
        default=("linear-1-512", "transformer-1-512"),
        metadata={"help": f"mimic variants as kind-layers-z (kind: {', '.join(KINDS)}; layers 1 or 2)"})
    share_grid: tuple[str, ...] = field(
        default=("K3-s50", "K3-s35"),
        metadata={"help": "shared variants as K<k>-s<percent> (a size budget: the shared stack's "
                          "parameters in percent of the dense stack's, ranks allocated per layer and "
                          "map), K<k>-r<rank> (one rank for every map) or blocks-r<rank> / "
                          "blocks-s<percent> (groups = the blocks that analyze finds)"})
    share_init: str = field(default="aware", metadata={
        "help": "conversion of the shared variants: svd (plain) or aware (keeps outputs on calibration clips)",
        "choices": ("svd", "aware")})
    share_align: bool = field(default=False, metadata={
        "help": "align FFN neurons and attention heads across each group before sharing"})
    share_recover_states: str = field(default="all", metadata={
        "help": "hidden states the shared variants' recovery distils: all, last, or all-then-last",
        "choices": ("all", "last", "all-then-last")})
    share_unlabelled: str = field(default="auto", metadata={
        "help": "unlabelled clips beside the labelled ones in the shared variants' layer-wise "
                "fit and recovery (a set's split=pool clips, never its eval clips); auto: "
                "synth-sentences for a Whisper teacher, so that its variants keep "
                "transcribing, none for the others; none: none"})
    share_max_unlabelled: int = field(default=48, metadata={
        "help": "at most this many --share-unlabelled clips, a seeded subset (0: all); each "
                "Whisper sentence is a 30 s window, 30× a keyword clip's frames, so 48 of them "
                "about double a shared variant's recovery time"})
    share_augment: int = field(default=-1, metadata={
        "help": "augmented copies of each --share-unlabelled clip in the shared variants' fit "
                "and recovery (see `stackslim share --augment`; 0: none; -1, auto: "
                f"{WHISPER_SHARE['augment']} for a Whisper teacher, 0 for the others)"})
    share_asr_weight: float = field(default=0.0, metadata={
        "help": "Whisper: weight of the decoder loss in the shared variants' recovery (0: none; "
                "see `stackslim share --asr-weight`), so that they keep transcribing"})
    share_local_epochs: int = field(default=-1, metadata={
        "help": "epochs of the layer-wise reconstruction of each shared variant before its "
                "recovery (see `stackslim share --local-epochs`; 0: none; -1, auto: "
                f"{WHISPER_SHARE['local_epochs']} for a Whisper teacher, so that its shared "
                "variants keep transcribing, 0 for the others)"})
    mimic_epochs: int = field(default=30, metadata={
        "help": "epochs (at most; early stopping on validation) of each mimic stage: stage 1 "
                "(MSE to the teacher) and stage 2 (task loss) alike"})
    recover_epochs: int = field(default=-1, metadata={
        "help": "recovery epochs of each shared variant (0: none; -1, auto: "
                f"{WHISPER_SHARE['recover_epochs']} for a Whisper teacher whose shared variants "
                "are fitted layer by layer, which keeps transcription better than end-to-end "
                f"distillation, {OTHER_SHARE['recover_epochs']} otherwise)"})
    max_minutes: float = field(default=0.0, metadata={
        "help": "optional wall-clock cap per training stage of the mimic and shared variants, "
                "in minutes (0: none); a variant whose training it cut short says so in "
                "results.json and the report"})
    wer_clips: int = field(default=100, metadata={
        "help": "Whisper: synth-sentences eval clips for word error rate, with its bootstrap interval"})
    translate: bool = field(default=True, metadata={
        "help": "multilingual Whisper teacher: BLEU and chrF into English and same-language WER "
                "of the teacher and every compressed encoder on --translate-data (--no-translate: "
                "skip; English-only and non-Whisper teachers skip it anyway)"})
    translate_data: str = field(default="synth-translate", metadata={
        "help": "translation set: a manifest with language, source_text and reference_en columns "
                "(its split=eval clips are read)"})
    translate_clips: int = field(default=6, metadata={
        "help": "eval clips per language of --translate-data, the first ones (synth-translate: "
                "each sentence in 3 voices)"})
    latency_clips: int = field(default=8, metadata={"help": "clips timed per variant for CPU latency"})
    seed: int = field(default=0, metadata={"help": "seed of splits, subsets and training"})
    stop_after: str = field(default="", metadata={"help": "stop after this step (a rerun resumes)"})
    onnx: bool = field(default=True, metadata={
        "help": "export every variant of the side-by-side table (teacher, best pruned, mimic, "
                "shared) to ONNX int8 and measure its bytes, CPU latency and test accuracy beside "
                "its PyTorch row (--no-onnx: skip)"})

    def __post_init__(self) -> None:
        for name in ("strategies", "mimic_grid", "share_grid"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.strategies:
            raise StudyError(f"--strategies: give at least one, of: {', '.join(ALL_STRATEGIES)}")
        unknown = [s for s in self.strategies if s not in ALL_STRATEGIES]
        if unknown:
            raise StudyError(f"--strategies: unknown strategy {unknown[0]!r}; choose from "
                             f"{', '.join(ALL_STRATEGIES)}")
        for name, grid in (("mimic_grid", self.mimic_grid), ("share_grid", self.share_grid)):
            if len(set(grid)) != len(grid):
                raise StudyError(f"{_flag(name)}: a variant listed twice: {','.join(grid)}")
        for spec in self.mimic_grid:
            parse_mimic(spec)
        for spec in self.share_grid:
            parse_share(spec)
        for name, low in (("max_clips", 3), ("analyze_clips", 3), ("latency_clips", 1), ("wer_clips", 0),
                          ("translate_clips", 1),
                          ("mimic_epochs", 1), ("recover_epochs", -1), ("share_max_unlabelled", 0),
                          ("share_augment", -1), ("share_local_epochs", -1)):
            if getattr(self, name) < low:
                raise StudyError(f"{_flag(name)} must be >= {low}, got {getattr(self, name)}")
        if self.max_minutes < 0:
            raise StudyError(f"--max-minutes must be >= 0 (0: no cap), got {self.max_minutes}")
        if self.translate and not self.translate_data:
            raise StudyError("--translate-data: give a translation set (e.g. synth-translate), "
                             "or --no-translate")
        if self.share_asr_weight < 0:
            raise StudyError(f"--share-asr-weight must be >= 0, got {self.share_asr_weight}")
        if self.share_asr_weight > 0 and self.share_unlabelled in ("", "none"):
            raise StudyError("--share-asr-weight needs clips to transcribe: give --share-unlabelled "
                             "auto or SPEC (e.g. synth-sentences)")
        if self.stop_after and self.stop_after not in step_names(preset(self), whisper=True):
            raise StudyError(f"--stop-after {self.stop_after!r} is not a step of this study; steps: "
                             f"{', '.join(step_names(preset(self), whisper=True))}")


# Smaller data and grids; the same work budgets per variant (mimic_epochs, recover_epochs) as
# the full study: on 300 clips they cost seconds, and fewer left the variants half-trained.
QUICK = dict(max_clips=300, analyze_clips=300, strategies=("forward", "backward", "bi", "greedy", "beam"),
             mimic_grid=("linear-1-256",), share_grid=("K2-r8",), wer_clips=8, latency_clips=4, translate_clips=3,
             share_max_unlabelled=24)


def preset(cfg: StudyConfig) -> StudyConfig:
    """Apply the quick preset to every knob the user left at its default."""
    if not cfg.quick:
        return cfg
    defaults = {f.name: f.default for f in fields(StudyConfig)}
    changes = {k: v for k, v in QUICK.items() if getattr(cfg, k) == defaults[k] != v}
    return replace(cfg, **changes) if changes else cfg


def step_names(cfg: StudyConfig, whisper: bool) -> list[str]:
    """The study's steps in order (`wer` and, unless --no-translate, `translate` for Whisper
    models only; `translate` records why it measured nothing for an English-only one)."""
    return (["analyze", "prune"] + [f"mimic-{m}" for m in cfg.mimic_grid]
            + [f"share-{s}" for s in cfg.share_grid] + (["wer"] if whisper else [])
            + (["translate"] if whisper and cfg.translate else []) + ["compare"])


class ShareBudget(NamedTuple):
    """The shared variants' training, the auto (-1) knobs resolved for the teacher."""

    local_epochs: int
    augment: int
    recover_epochs: int


def share_budget(cfg: StudyConfig, whisper: bool) -> ShareBudget:
    """`--share-local-epochs`, `--share-augment` and `--recover-epochs`, each -1 (auto) resolved:
    for a Whisper teacher `WHISPER_SHARE` (a layer-wise fit, no end-to-end recovery), for the
    others `OTHER_SHARE` (recovery alone); a value the user gave is kept."""
    auto = WHISPER_SHARE if whisper else OTHER_SHARE
    return ShareBudget(*(auto[n] if getattr(cfg, k) == -1 else getattr(cfg, k)
                         for n, k in (("local_epochs", "share_local_epochs"), ("augment", "share_augment"),
                                      ("recover_epochs", "recover_epochs"))))


def share_unlabelled(cfg: StudyConfig, whisper: bool) -> str:
    """The shared variants' unlabelled clips: `--share-unlabelled` resolved for the teacher
    ("auto": synth-sentences for Whisper, whose variants must keep transcribing; "" otherwise)."""
    if cfg.share_unlabelled == "auto":
        return "synth-sentences" if whisper else ""
    return "" if cfg.share_unlabelled == "none" else cfg.share_unlabelled


def parse_mimic(spec: str) -> tuple[str, int, int]:
    """"linear-1-512" → ("linear", 1, 512); StudyError for anything else."""
    parts = spec.split("-")
    try:
        kind, layers, z = parts[0], int(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise StudyError(f"--mimic-grid: variant {spec!r}: expected kind-layers-z, e.g. linear-1-512") from None
    if kind not in KINDS:
        raise StudyError(f"--mimic-grid: variant {spec!r}: kind must be one of {', '.join(KINDS)}")
    if layers not in (1, 2):
        raise StudyError(f"--mimic-grid: variant {spec!r}: layers must be 1 or 2")
    if z < 1:
        raise StudyError(f"--mimic-grid: variant {spec!r}: z must be >= 1")
    return kind, layers, z


class GridShare(NamedTuple):
    """A shared variant of the grid: how layers are grouped, K, and one uniform `rank` or a
    `size` budget (a fraction of the stack's parameters; ranks then chosen per layer and map)."""

    groups: str  # "adjacent" or "blocks"
    k: int  # layers per group (0: whole blocks)
    rank: int  # uniform rank (0 with a size budget)
    size: float = 0.0  # fraction of the dense stack (0: use `rank`)


def parse_share(spec: str) -> GridShare:
    """"K3-r16" → ("adjacent", 3, 16, 0.0); "blocks-r16" → ("blocks", 0, 16, 0.0); "K3-s50" (50%
    of the stack's parameters, ranks allocated) → ("adjacent", 3, 0, 0.5); StudyError otherwise."""
    bad = StudyError(f"--share-grid: variant {spec!r}: expected K<k>-r<rank>, K<k>-s<percent> "
                     "or blocks-r<rank>, e.g. K3-r16 or K3-s50")
    parts = spec.split("-")
    if (len(parts) != 2 or parts[1][:1] not in ("r", "s")
            or not (parts[0] == "blocks" or parts[0].startswith("K"))):
        raise bad
    try:
        number = int(parts[1][1:])
        k = 0 if parts[0] == "blocks" else int(parts[0][1:])
    except ValueError:
        raise bad from None
    if parts[0] != "blocks" and k < 1:
        raise StudyError(f"--share-grid: variant {spec!r}: K (layers per group) must be >= 1")
    groups = "blocks" if parts[0] == "blocks" else "adjacent"
    if parts[1][0] == "s":
        if not 1 <= number <= 100:
            raise StudyError(f"--share-grid: variant {spec!r}: size must be 1 to 100 (% of the stack)")
        return GridShare(groups, k, 0, number / 100)
    if number < 1:
        raise StudyError(f"--share-grid: variant {spec!r}: rank must be >= 1")
    return GridShare(groups, k, number)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
