"""Budgets no candidate can meet are refused through the CLI before any training: exit 2,
one line naming the smallest budget that could be met, nothing written."""
from __future__ import annotations

import pytest

from stackslim.cli import main


@pytest.mark.parametrize("flags, words", [
    (["--max-mb", "0.05"], "below the smallest model fit can build from this encoder: 0.1139 MB"),
    (["--max-mb", "-3"], "--max-mb must be > 0"),
    (["--max-mb", "1", "--max-ms", "0.001"], "below the fastest model fit can build"),
])
def test_bad_budget_is_one_line_exit_2_nothing_written(fit_tones, tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    rc = main(["fit", "random:whisper", str(fit_tones / "manifest.csv"), "--out", str(out),
               "--quiet", "--threads", "1", *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and words in err, err
    assert not out.exists()
