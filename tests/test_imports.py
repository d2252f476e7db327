"""No import circle between the package's files (imports inside functions count too)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_cycles.py"


def _cycles_module():
    spec = importlib.util.spec_from_file_location("import_cycles", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_import_circle():
    mod = _cycles_module()
    assert mod.cycles(mod.graph()) == []


def test_the_check_finds_a_circle():
    mod = _cycles_module()
    assert mod.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
