"""The configuration of `stackslim study` and its two presets.

    stackslim study                                    # whisper-base on synth-commands, ~30 min
    stackslim study --quick                            # the same steps, smaller, ~5 min
    stackslim study random:wavlm DATA --quick --out runs/q
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class StudyConfig:
    """What the study runs. `--quick` shrinks every knob (see `preset`)."""

    task: str = field(default="word", metadata={"help": "task of the data set: word, speaker, or a column"})
    quick: bool = field(default=False, metadata={"help": "small preset: every step smaller (about 5 minutes)"})
    max_clips: int = field(default=1500, metadata={"help": "clips (all splits) for teacher, pruning, mimic, share"})
    analyze_clips: int = field(default=1500, metadata={
        "help": "clips of the study's own (at most --max-clips) for the similarity matrices"})
    strategies: tuple[str, ...] = field(
        default=("forward", "backward", "bi", "knn-bi", "iterative", "greedy", "blocks"),
        metadata={"help": "pruning strategies"})
    mimic_grid: tuple[str, ...] = field(
        default=("linear-1-512", "transformer-1-512"),
        metadata={"help": "mimic variants as kind-layers-z"})
    share_grid: tuple[str, ...] = field(
        default=("K2-r64", "K3-r16", "blocks-r16"),
        metadata={"help": "shared variants as K<k>-r<rank> or blocks-r<rank>"})
    share_init: str = field(default="aware", metadata={
        "help": "conversion of the shared variants: svd (plain) or aware (keeps outputs on calibration clips)",
        "choices": ("svd", "aware")})
    share_align: bool = field(default=False, metadata={
        "help": "align FFN neurons and attention heads across each group before sharing"})
    share_recover_states: str = field(default="all", metadata={
        "help": "hidden states the shared variants' recovery distils: all, last, or all-then-last",
        "choices": ("all", "last", "all-then-last")})
    share_unlabelled: str = field(default="", metadata={
        "help": "unlabelled clips beside the labelled ones in the shared variants' recovery "
                "(e.g. synth-sentences); needed by --share-asr-weight"})
    share_max_unlabelled: int = field(default=300, metadata={
        "help": "at most this many --share-unlabelled clips, a seeded subset (0: all)"})
    share_asr_weight: float = field(default=0.0, metadata={
        "help": "Whisper: weight of the decoder loss in the shared variants' recovery (0: none; "
                "see `stackslim share --asr-weight`), so that they keep transcribing"})
    train_minutes: float = field(default=1.5, metadata={"help": "time budget of each training stage / recovery"})
    wer_clips: int = field(default=30, metadata={"help": "Whisper: synth-sentences clips for word error rate"})
    latency_clips: int = field(default=8, metadata={"help": "clips timed per variant for CPU latency"})
    seed: int = field(default=0, metadata={"help": "seed of splits, subsets and training"})
    stop_after: str = field(default="", metadata={"help": "stop after this step (a rerun resumes)"})


QUICK = dict(max_clips=300, analyze_clips=300, strategies=("forward", "backward", "bi", "greedy"),
             mimic_grid=("linear-1-256",), share_grid=("K2-r8",), train_minutes=0.3, wer_clips=8,
             latency_clips=4)


def preset(cfg: StudyConfig) -> StudyConfig:
    """Apply the quick preset to every knob the user left at its default."""
    if not cfg.quick:
        return cfg
    defaults = StudyConfig()
    changes = {k: v for k, v in QUICK.items() if getattr(cfg, k) == getattr(defaults, k)}
    return replace(cfg, **changes)


def parse_mimic(spec: str) -> tuple[str, int, int]:
    """"linear-1-512" → ("linear", 1, 512)."""
    try:
        kind, layers, z = spec.split("-")
        return kind, int(layers), int(z)
    except ValueError as e:
        raise ValueError(f"mimic variant {spec!r}: expected kind-layers-z, e.g. linear-1-512") from e


def parse_share(spec: str) -> tuple[str, int, int]:
    """"K3-r16" → ("adjacent", 3, 16); "blocks-r16" → ("blocks", 0, 16)."""
    try:
        g, r = spec.split("-")
        rank = int(r.lstrip("r"))
        if g == "blocks":
            return "blocks", 0, rank
        return "adjacent", int(g.lstrip("K")), rank
    except ValueError as e:
        raise ValueError(f"share variant {spec!r}: expected K<k>-r<rank> or blocks-r<rank>") from e
