"""The CLI's table of input errors (printed as one line, exit status 2)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import stackslim
from stackslim.cli import known_errors


def _error_classes() -> list[type]:
    """Every `class XError(...)` defined in the package's sources, imported from its module (a
    module that fails to import fails here, loudly)."""
    root = Path(stackslim.__file__).parent
    found = []
    for p in sorted(root.rglob("*.py")):
        names = [n.name for n in ast.walk(ast.parse(p.read_text()))
                 if isinstance(n, ast.ClassDef) and n.name.endswith("Error")]
        if names:
            parts = p.relative_to(root.parent).with_suffix("").parts
            module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            found += [getattr(module, n) for n in names]
    return found


def test_every_error_type_of_the_package_is_known_to_the_cli():
    # cli.known_errors must not drop an error type (e.g. when its module fails to import):
    # the command would then end in a traceback instead of one line and exit status 2
    known = known_errors()
    errors = _error_classes()
    assert {e.__name__ for e in errors} >= {"EncoderError", "OutputError", "AudioError", "DataError",
                                            "SimilarityError", "PruneError", "MimicError", "DeviceError"}
    missing = [f"{e.__module__}.{e.__name__}" for e in errors if not issubclass(e, known)]
    assert missing == []
