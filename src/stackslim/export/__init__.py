"""Export: ONNX (onnxruntime, int8) and CTranslate2 writers with parity checks.

    from stackslim.export import ExportConfig, run
    run("runs/share/model", "runs/share/onnx", ExportConfig(format="onnx", int8=True))
"""
from .config import ExportConfig, ExportError
from .pipeline import ExportResult, load_model, run

__all__ = ["ExportConfig", "ExportError", "ExportResult", "load_model", "run"]
