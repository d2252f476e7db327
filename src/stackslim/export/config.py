"""`ExportConfig` (what `stackslim export` writes) and `ExportError`.

    stackslim export runs/share/model --out runs/share/onnx --format onnx --int8
    stackslim export runs/prune/model --out runs/prune/ct2 --format ct2 --int8
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import StackslimError

FORMATS = ("onnx", "ct2")


class ExportError(StackslimError):
    """An export stackslim cannot do: an unrecognised folder, a family or format that cannot be
    exported (``ct2`` of a wav2vec2), an output path that is a file (one-line message)."""


@dataclass(frozen=True)
class ExportConfig:
    """How to export one model folder.

    Example: ``ExportConfig(format="onnx", int8=True, opset=17)``.
    """

    format: str = field(default="onnx", metadata={"help": "onnx (onnxruntime; any family) or ct2 "
                                                          "(CTranslate2; Whisper only)"})
    int8: bool = field(default=False, metadata={"help": "also write int8 weights: onnx → "
                                                        "model.int8.onnx (dynamic quantization of "
                                                        "every weight matrix, convs and position "
                                                        "tables included), "
                                                        "ct2 → the int8 quantization"})
    opset: int = field(default=17, metadata={"help": "ONNX opset version (onnx only)"})
    parity_clips: int = field(default=3, metadata={"help": "clips of different lengths in the "
                                                           "batch that checks parity at export"})
    tolerance: float = field(default=1e-4, metadata={"help": "largest absolute difference allowed "
                                                             "between the float export and PyTorch "
                                                             "on valid frames, times the largest "
                                                             "output when that exceeds 1"})
    int8_tolerance: float = field(default=0.25, metadata={"help": "largest relative error "
                                                                  "||int8 - PyTorch|| / ||PyTorch|| "
                                                                  "on valid frames of the int8 model "
                                                                  "(whisper-base: about 0.13)"})
    seed: int = field(default=0, metadata={"help": "seed of the parity clips"})

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not 13 <= int(self.opset) <= 20:
            raise ExportError(f"--opset must be between 13 and 20, got {self.opset}")
        if self.parity_clips < 1:
            raise ExportError(f"--parity-clips must be >= 1, got {self.parity_clips}")
        if not self.tolerance > 0 or not self.int8_tolerance > 0:
            raise ExportError("--tolerance and --int8-tolerance must be > 0")
