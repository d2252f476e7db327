"""`stackslim share --init aware --align --calib N`: output errors, alignment and both stages in share.json."""
from __future__ import annotations

import json

from stackslim.cli import main


def test_share_command_aware_aligned(tone_data, tmp_path):
    out = tmp_path / "run"
    rc = main(["share", "random:whisper", str(tone_data), "--out", str(out), "--group", "2",
               "--rank", "4", "--init", "aware", "--align", "--calib", "8",
               "--recover-states", "all-then-last", "--epochs", "2", "--max-minutes", "0.5",
               "--head-epochs", "2", "--latency-clips", "0", "--batch-size", "8"])
    assert rc == 0
    res = json.loads((out / "share.json").read_text())
    assert res["config"]["init"] == "aware" and res["config"]["align"] is True
    rows = res["conversion"]["matrices"]
    assert len(rows) == 4 * 6 and all({"rel_error", "out_error", "shared"} <= set(r) for r in rows)
    assert all({"mean", "out_mean"} <= set(v) for v in res["conversion"]["summary"].values())
    al = res["conversion"]["alignment"]
    assert set(al["spread_before"]) == set(res["conversion"]["summary"]) and al["heads"] is True
    assert res["before"]["accuracy"] is not None and res["after"] is not None
    assert res["recovery"]["epochs_run"] >= 1
    assert res["disk"]["compact_decoder_bytes"] > 0


def test_aware_without_calibration_is_a_one_line_error(tone_data, tmp_path, capsys):
    rc = main(["share", "random:whisper", str(tone_data), "--out", str(tmp_path / "x"),
               "--init", "aware", "--calib", "0"])
    assert rc == 2
    assert "--init aware needs calibration clips" in capsys.readouterr().err
