"""The study's --share-* recovery knobs reach `stackslim share` and change the steps' keys."""
from __future__ import annotations

from dataclasses import replace

import stackslim.share.command as share_command
from stackslim.study import run as study_run
from stackslim.study.config import StudyConfig


class _Result:
    def to_json(self) -> dict:
        acc = {"accuracy": 0.5}
        return {"after": acc, "before": acc, "teacher": acc, "size": {"stack_ratio": 0.5}, "groups": []}


def test_share_step_passes_the_recovery_knobs(monkeypatch, tmp_path):
    seen = {}

    def fake_share(enc, ds, folder, scfg, spec=None):
        seen["cfg"], seen["spec"] = scfg, spec
        return _Result()

    monkeypatch.setattr(share_command, "share", fake_share)
    cfg = StudyConfig(share_recover_states="last", share_unlabelled="synth-sentences",
                      share_max_unlabelled=120, share_asr_weight=1.0)
    study_run._share_step("whisper-base", None, None, cfg, "K3-r16")(tmp_path)
    s = seen["cfg"]
    assert (s.group, s.rank, s.recover_states, s.unlabelled, s.max_unlabelled, s.asr_weight) == \
        (3, 16, "last", "synth-sentences", 120, 1.0)
    assert seen["spec"] == "whisper-base"  # where the tokenizer for the decoder loss comes from


def test_default_knobs_keep_the_old_step_keys_and_others_change_them():
    default = StudyConfig()
    assert study_run._share_recovery_knobs(default) == []  # studies run before still resume
    for change in (dict(share_recover_states="last"), dict(share_unlabelled="synth-sentences"),
                   dict(share_max_unlabelled=10), dict(share_asr_weight=1.0)):
        assert study_run._share_recovery_knobs(replace(default, **change)) != [], change


def test_asr_weight_without_clips_fails_before_any_step(tone_data, tmp_path, capsys):
    from stackslim.cli import main

    out = tmp_path / "study"
    rc = main(["study", "random:whisper", str(tone_data), "--quick", "--out", str(out),
               "--share-asr-weight", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "--share-asr-weight" in err[0]
    assert not (out / "analyze").exists()
