"""The CLI's table of input errors (printed as one line, exit status 2)."""
from __future__ import annotations

import ast
from pathlib import Path

import stackslim
from stackslim.cli import known_errors


def _error_classes() -> set[str]:
    """Every `class XError(...)` defined in the package's sources."""
    names = set()
    for p in Path(stackslim.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                names.add(node.name)
    return names


def test_every_error_type_of_the_package_is_known_to_the_cli():
    # a module that fails to import must not drop its error from the table without a word
    known = {e.__name__ for e in known_errors()}
    assert _error_classes() <= known, sorted(_error_classes() - known)
    assert {"EncoderError", "OutputError", "AudioError", "DataError", "SimilarityError",
            "PruneError", "MimicError", "DeviceError"} <= known
