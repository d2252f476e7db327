"""Splits: by speaker when every clip has one; otherwise random (stratified by class) with a
warning that names the data set; the kind of split is in every results file (`task.split`)."""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import pytest
from tonedata import make_tone_dataset

from stackslim.cli import main
from stackslim.heads.task import prepare_task

PRUNE = ["--epochs", "2", "--refit-epochs", "1", "--strategies", "forward", "--quiet", "--no-save-model"]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """2 words x 3 speakers x 4 clips (24: enough for a random split with 2 validation clips)."""
    return make_tone_dataset(tmp_path_factory.mktemp("tones24"), words=2, speakers=3, per=4, seconds=0.5)


def _split_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "have no speaker" in str(w.message)]


def test_folder_without_speakers_splits_randomly_with_a_warning(tones, tmp_path):
    data = Path(shutil.copytree(tones, tmp_path / "nospeakers", ignore=shutil.ignore_patterns("manifest.csv")))
    before = tree_digest(data)
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert main(["prune", "random:wav2vec2", str(data), "--out", str(out), *PRUNE]) == 0
    said = _split_warnings(rec)
    assert len(said) == 1 and said[0].startswith("nospeakers: 24 of 24 clips have no speaker")
    assert "random" in said[0]
    task = json.loads((out / "pruning.json").read_text())["task"]
    assert task["split"] == "random (stratified by label)"
    assert tree_digest(data) == before


def test_manifest_with_speakers_splits_by_speaker_silently(tones, tmp_path):
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert main(["prune", "random:wav2vec2", str(tones), "--out", str(out), *PRUNE]) == 0
    assert _split_warnings(rec) == []
    assert json.loads((out / "pruning.json").read_text())["task"]["split"] == "by speaker"


def test_one_clip_without_a_speaker_is_enough_to_fall_back(tones, tmp_path):
    rows = (tones / "manifest.csv").read_text().splitlines()
    head, first, rest = rows[0], rows[1].split(","), rows[2:]
    manifest = tones / "one-missing.csv"  # beside the clips, for the relative paths
    try:
        manifest.write_text("\n".join([head, ",".join(first[:2] + [""]), *rest]) + "\n")
        with pytest.warns(UserWarning, match="one-missing: 1 of 24 clips have no speaker"):
            task = prepare_task(str(manifest), "word", seed=0)
    finally:
        manifest.unlink()
    assert task.split_kind == "random (stratified by label)" and task.describe()["split"] == task.split_kind


def test_speaker_task_splits_by_label(tones):
    from stackslim.data import load_dataset, task_labels

    assert task_labels(load_dataset(tones), "speaker").split_kind == "by label"  # unseen words in test
