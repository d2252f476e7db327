"""The same seed gives the same results on CPU: each command run twice, results compared
(timings, latencies, versions and output paths left out)."""
from __future__ import annotations

import pytest
from relhelpers import FAST, RESULT_FILE, finite_json, load_result

from stackslim.cli import main


@pytest.mark.parametrize("cmd", ["analyze", "prune", "mimic", "share"])
def test_same_seed_same_results(cmd, tiny_data, reference, tmp_path):
    first = reference(cmd)
    out = tmp_path / "again"
    assert main([cmd, "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST[cmd]]) == 0
    assert load_result(out, cmd) == load_result(first, cmd)  # exactly, in one process
    for f in (RESULT_FILE[cmd], "config.json", "blocks.json"):
        if (out / f).exists():
            assert finite_json(out / f), f


def test_another_seed_changes_the_split(tiny_data, reference, tmp_path):
    """The comparison above is not vacuous: the seed reaches the results."""
    out = tmp_path / "seed1"
    assert main(["prune", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["prune"], "--seed", "1"]) == 0
    assert load_result(out, "prune") != load_result(reference("prune"), "prune")
