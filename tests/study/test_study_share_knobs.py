"""The study's --share-* recovery knobs and work budgets reach `stackslim.share.run` /
`stackslim.mimic.run` and change the steps' keys."""
from __future__ import annotations

from dataclasses import replace

import stackslim.share
from stackslim.study import StudyConfig
from stackslim.study import pipeline as study_pipeline
from stackslim.study.config import OTHER_SHARE, WHISPER_SHARE
from stackslim.study.steps import step_key


class _Result:
    def to_json(self) -> dict:
        acc = {"accuracy": 0.5}
        return {"after": acc, "before": acc, "teacher": acc, "size": {"stack_ratio": 0.5}, "groups": [],
                "recovery": {"epochs_run": 1, "stopped_by": "time"}}


def test_share_step_passes_the_recovery_knobs(monkeypatch, tmp_path):
    seen = {}

    def fake_share(enc, ds, folder, scfg, *, progress=True, force=False, spec=None):
        seen["cfg"], seen["spec"] = scfg, spec
        return _Result()

    monkeypatch.setattr(stackslim.share, "run", fake_share)
    cfg = StudyConfig(share_recover_states="last", share_unlabelled="synth-sentences",
                      share_max_unlabelled=90, share_asr_weight=1.0, recover_epochs=2, max_minutes=0.5,
                      share_local_epochs=7, share_augment=2, share_grid=("K3-r16",))
    scfg = study_pipeline.method_configs(cfg)["share-K3-r16"]
    summary = study_pipeline._share_step("whisper-base", None, None, scfg, False)(tmp_path)
    s = seen["cfg"]
    assert (s.group, s.rank, s.recover_states, s.unlabelled, s.max_unlabelled, s.asr_weight) == \
        (3, 16, "last", "synth-sentences", 90, 1.0)
    assert (s.train.epochs, s.train.max_minutes, s.train.seed, s.local_epochs, s.augment) == (2, 0.5, 0, 7, 2)
    assert seen["spec"] == "whisper-base"  # where the tokenizer for the decoder loss comes from
    assert summary["capped"] == ["recovery"]  # the cap bit: the variant's row will say so


def test_row_takes_the_last_stage_that_trained(tmp_path):
    """No recovery (a Whisper teacher's default): the row gives the layer-wise fit's accuracy,
    not the conversion's; with a recovery, the recovery's; with neither, the conversion's."""
    r = {**_Result().to_json(), "before": {"accuracy": 0.4}, "after": None,
         "local": {"eval": {"accuracy": 0.9}}, "recovery": None}
    assert study_pipeline.share_summary(r, tmp_path)["accuracy"] == 0.9
    assert study_pipeline.share_summary({**r, "after": {"accuracy": 0.8}}, tmp_path)["accuracy"] == 0.8
    assert study_pipeline.share_summary({**r, "local": None}, tmp_path)["accuracy"] == 0.4
    assert study_pipeline.share_summary(r, tmp_path)["capacity"] == 0.9 / 0.5


def test_auto_share_training_resolves_for_the_teacher():
    """Auto (-1): a Whisper teacher's shared variants get the layer-wise fit with copies and no
    end-to-end recovery; the others recovery alone; a value the user gave is kept for both."""
    whisper = study_pipeline.method_configs(StudyConfig(), whisper=True)["share-K3-s50"]
    other = study_pipeline.method_configs(StudyConfig(share_unlabelled="x"), whisper=False)["share-K3-s50"]
    want = WHISPER_SHARE
    assert (whisper.local_epochs, whisper.augment, whisper.train.epochs) == \
        (want["local_epochs"], want["augment"], want["recover_epochs"]) == (6, 1, 0)
    assert (other.local_epochs, other.augment, other.train.epochs) == (0, 0, OTHER_SHARE["recover_epochs"]) == (0, 0, 3)
    mine = StudyConfig(share_local_epochs=2, share_augment=0, recover_epochs=1)
    for w in (True, False):
        c = study_pipeline.method_configs(mine, whisper=w)["share-K3-s50"]
        assert (c.local_epochs, c.augment, c.train.epochs) == (2, 0, 1)


def test_size_variant_reaches_share_as_a_size_budget():
    """K3-s50 in the grid: share converts at 50% of the stack (ranks allocated), no uniform rank."""
    cfg = StudyConfig(share_grid=("K3-s50", "K2-r8"))
    configs = study_pipeline.method_configs(cfg)
    assert (configs["share-K3-s50"].group, configs["share-K3-s50"].size) == (3, 0.5)
    assert (configs["share-K2-r8"].size, configs["share-K2-r8"].rank) == (0.0, 8)


def test_mimic_budget_is_counted_in_epochs_for_both_stages():
    m = study_pipeline.method_configs(StudyConfig(mimic_epochs=7, seed=3))["mimic-linear-1-512"]
    assert (m.train.epochs, m.task_epochs, m.train.max_minutes, m.train.seed) == (7, 7, 0.0, 3)


def test_every_knob_changes_its_step_key():
    default = study_pipeline.method_configs(StudyConfig())["share-K3-s50"]
    for change in (dict(share_recover_states="last"), dict(share_unlabelled="synth-sentences"),
                   dict(share_max_unlabelled=10), dict(share_asr_weight=1.0, share_unlabelled="x"),
                   dict(recover_epochs=5), dict(max_minutes=1.0), dict(seed=1),
                   dict(share_local_epochs=3), dict(share_augment=1, share_unlabelled="x")):
        other = study_pipeline.method_configs(replace(StudyConfig(), **change))["share-K3-s50"]
        assert step_key(other) != step_key(default), change


def test_capped_names_the_stages_a_cap_cut_short():
    logs = {"teacher_head": {"stopped_by": "patience"}, "stage1": {"stopped_by": "time"},
            "stage2": {"stopped_by": "epochs"}}
    assert study_pipeline.capped(logs) == ["stage1"]
    assert study_pipeline.capped({"stage1": None}) == []


def test_asr_weight_without_clips_fails_before_any_step(tone_data, tmp_path, capsys):
    from stackslim.cli import main

    out = tmp_path / "study"
    rc = main(["study", "random:whisper", str(tone_data), "--quick", "--out", str(out),
               "--share-asr-weight", "1", "--share-unlabelled", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "--share-asr-weight" in err[0]
    assert not (out / "analyze").exists()


def test_share_unlabelled_auto_gives_whisper_sentences_and_others_none():
    def unlabelled(whisper: bool, **kw) -> str:
        return study_pipeline.method_configs(StudyConfig(**kw), whisper)["share-K3-s50"].unlabelled

    assert unlabelled(True) == "synth-sentences"  # the default: Whisper's variants keep transcribing
    assert unlabelled(False) == ""
    assert unlabelled(True, share_unlabelled="none") == unlabelled(False, share_unlabelled="none") == ""
    assert unlabelled(False, share_unlabelled="/data/pool") == "/data/pool"
    # copies of no clips: none (a non-Whisper teacher's default has no unlabelled clips)
    assert study_pipeline.method_configs(StudyConfig(share_augment=2), False)["share-K3-s50"].augment == 0
