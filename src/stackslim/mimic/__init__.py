"""Mimicking layers (Dorszewski et al., ICASSP 2025): replace a speech encoder's whole stack by
one or two small layers that read the front end's output (before positional encoding), trained
first to reproduce the teacher's hidden states (MSE), then on the task through its head.

    from stackslim.mimic import MimicConfig, MimicModel, run
    res = run("whisper-base", "synth-commands", "runs/mimic", MimicConfig(kind="linear", hidden=512))
    model = MimicModel.load("runs/mimic/model")
    model.predict(waves)                       # class names of 16 kHz clips

Command: ``stackslim mimic MODEL DATA --out DIR [--kind linear|transformer] [--layers 1|2]
[--hidden z] [--epochs N] [--baseline]``; ``--task asr`` (Whisper): mimic layers that feed
the teacher's decoder, trained on sentences and scored by WER (`asr`, `asr_pipeline`).
"""
from .asr_pipeline import AsrMimicResult, run_asr
from .config import MimicConfig, MimicError
from .data import BOUNDARY, FEATURES, LAST, MimicData, build_data, cache_targets, find_boundary
from .fit import fit_mimic, fit_teacher_head, stage1, stage2
from .layers import KINDS, LinearMimic, TransformerMimic, make_layer
from .model import MimicModel, front_end_copy
from .pipeline import MimicResult, choose_boundary, run

__all__ = [
    "AsrMimicResult", "BOUNDARY", "FEATURES", "KINDS", "LAST", "LinearMimic", "MimicConfig",
    "MimicData", "MimicError", "MimicModel", "MimicResult", "TransformerMimic", "build_data", "cache_targets", "find_boundary",
    "choose_boundary", "fit_mimic", "fit_teacher_head", "front_end_copy", "make_layer", "run", "run_asr",
    "stage1", "stage2",
]
