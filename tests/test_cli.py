"""Input errors: every error type of the package derives from the one root the CLI catches
(printed as one line, exit status 2); the commands are imported statically."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import stackslim
from stackslim.cli import COMMANDS
from stackslim.errors import StackslimError


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


def test_every_error_type_of_the_package_derives_from_the_root():
    # an error outside the hierarchy would end a command in a traceback instead of one line
    known = StackslimError
    errors = _error_classes()
    assert {e.__name__ for e in errors} >= {"EncoderError", "OutputError", "AudioError", "DataError",
                                            "SimilarityError", "PruneError", "MimicError", "DeviceError",
                                            "ShareError", "StudyError"}
    missing = [f"{e.__module__}.{e.__name__}" for e in errors if not issubclass(e, known)]
    assert missing == []


def test_every_command_is_registered():
    assert set(COMMANDS) >= {"info", "data", "analyze", "prune", "mimic", "share", "study"}
