"""`stackslim share --unlabelled SPEC --max-unlabelled N`: recovery distils on the train split
and unlabelled clips (cut into windows), records them in share.json, keeps its time budget,
and a bad spec fails before anything is written."""
from __future__ import annotations

import json

import numpy as np
import pytest

from stackslim.cli import main
from stackslim.data import Clip, write_manifest, write_wav

FAST = ["--group", "2", "--rank", "2", "--head-epochs", "1", "--latency-clips", "0",
        "--calib", "0", "--batch-size", "8"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """6 unlabelled noise clips of 0.6 s: longer than the 0.25 s train clips, so cut in windows."""
    root = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(1)
    clips = [Clip(path=write_wav(root / "any" / f"c{i}.wav",
                                 (0.1 * rng.standard_normal(9600)).astype(np.float32)), label="any")
             for i in range(6)]
    write_manifest(root / "manifest.csv", clips)
    return root


def _share(tone_data, out, *extra) -> dict:
    rc = main(["share", "random:wav2vec2", str(tone_data), "--out", str(out), *FAST, *extra])
    assert rc == 0
    return json.loads((out / "share.json").read_text())


def test_unlabelled_clips_join_the_recovery(tone_data, pool, tmp_path):
    res = _share(tone_data, tmp_path / "pool", "--unlabelled", str(pool), "--max-unlabelled", "4",
                 "--epochs", "1")
    base = _share(tone_data, tmp_path / "base", "--epochs", "1")
    n, n0 = res["recovery"]["data"], base["recovery"]["data"]
    assert res["config"]["unlabelled"] == str(pool) and res["config"]["max_unlabelled"] == 4
    assert n["unlabelled_clips"] == 4 and n0["unlabelled_clips"] == 0
    assert n["labelled_clips"] == n0["labelled_clips"] == n0["rows"] == res["task"]["clips"]["train"]
    assert n["unlabelled_windows"] > 4  # 0.6 s clips cut to the 0.25 s train clips' length
    assert n["rows"] == n["labelled_clips"] + n["unlabelled_windows"] > n0["rows"]
    assert n["unlabelled_frames"] > n["labelled_frames"] / n["labelled_clips"] * 4
    assert res["recovery"]["epochs_run"] == 1 and res["after"] is not None


def test_recovery_keeps_its_time_budget_with_unlabelled_clips(tone_data, pool, tmp_path):
    budget_s = 3.0
    res = _share(tone_data, tmp_path / "run", "--unlabelled", str(pool), "--epochs", "100000",
                 "--patience", "100000", "--max-minutes", str(budget_s / 60),
                 "--recover-states", "all-then-last")
    rec = res["recovery"]
    assert rec["data"]["unlabelled_clips"] == 6 and rec["stopped_by"] == "time"
    epoch_s = rec["seconds"] / rec["epochs_run"]
    assert rec["seconds"] <= budget_s + epoch_s + 2.0


def test_bad_unlabelled_spec_is_a_one_line_error_and_writes_nothing(tone_data, tmp_path, capsys):
    out = tmp_path / "run"
    bad = tmp_path / "no-such-pool"
    rc = main(["share", "random:wav2vec2", str(tone_data), "--out", str(out), *FAST,
               "--unlabelled", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "--unlabelled" in err and str(bad) in err


def test_whisper_reads_unlabelled_clips_whole_and_followed_by_silence(tone_data, pool, tmp_path):
    """For Whisper the unlabelled clips are padded with silence (as Whisper reads speech) and kept
    whole, not cut into the train clips' windows: the teacher's states of a clip attended to all
    of it. The layer-wise fit alone (--epochs 0) reads them too."""
    args = ["share", "random:whisper", str(tone_data), *FAST, "--unlabelled", str(pool),
            "--max-unlabelled", "4"]
    assert main([*args, "--out", str(tmp_path / "e2e"), "--epochs", "1"]) == 0
    n = json.loads((tmp_path / "e2e" / "share.json").read_text())["recovery"]["data"]
    assert n["unlabelled_clips"] == n["unlabelled_windows"] == 4
    assert n["unlabelled_frames"] == 4 * 300  # 0.6 s of noise + silence up to 6 s, 50 states/s
    assert main([*args, "--out", str(tmp_path / "local"), "--epochs", "0", "--local-epochs", "1"]) == 0
    res = json.loads((tmp_path / "local" / "share.json").read_text())
    assert res["local"]["clips"] == res["task"]["clips"]["train"] + 4
    assert not any("unused" in note for note in res["notes"])


def test_augment_adds_copies_of_each_unlabelled_clip(tone_data, pool, tmp_path):
    """--augment 2: each unlabelled clip joins the recovery with two augmented copies, the
    labelled clips unchanged; a negative count is refused before anything is written."""
    args = ["share", "random:whisper", str(tone_data), *FAST, "--unlabelled", str(pool),
            "--max-unlabelled", "3", "--epochs", "1"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--out", str(tmp_path / "aug"), "--augment", "2"]) == 0
    plain, aug = (json.loads((tmp_path / d / "share.json").read_text()) for d in ("plain", "aug"))
    n0, n = plain["recovery"]["data"], aug["recovery"]["data"]
    assert n0["unlabelled_clips"] == 3 and n["unlabelled_clips"] == 9
    assert n["labelled_clips"] == n0["labelled_clips"]
    assert n["unlabelled_frames"] == 3 * n0["unlabelled_frames"]  # each padded to 6 s
    assert aug["config"]["augment"] == 2
    rc = main([*args, "--out", str(tmp_path / "bad"), "--augment", "-1"])
    assert rc == 2 and not (tmp_path / "bad").exists()
