"""Folder and CSV data sets, manifests, task labels and splits."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackslim.data import (
    AudioDataset,
    Clip,
    DataError,
    from_csv,
    from_folder,
    load_dataset,
    split,
    task_labels,
    write_manifest,
)


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def grid_dataset(n_speakers: int = 10, labels=("a", "b", "c"), reps: int = 2) -> AudioDataset:
    """Every speaker says every label ``reps`` times (paths are never read here)."""
    clips = [
        Clip(
            Path(f"/x/{s}_{lab}_{r}.wav"),
            lab,
            f"s{s}",
            {"style": ("calm", "loud", "soft")[(s + r) % 3]},
        )
        for s in range(n_speakers)
        for lab in labels
        for r in range(reps)
    ]
    return AudioDataset(clips, name="grid")


# --- folder loader ---------------------------------------------------------------------------


def test_from_folder(label_folder):
    ds = from_folder(label_folder)
    assert len(ds) == 12 and ds.labels == ["no", "up", "yes"]
    assert {c.speaker for c in ds.clips} == {"spk0", "spk1", "spk2", "spk3"}
    assert all(c.path.is_absolute() and "_background_noise_" not in str(c.path) for c in ds.clips)
    assert [ds.labels[i] for i in ds.label_ids] == [c.label for c in ds.clips]
    assert ds.load(0).shape == (4800,)


def test_from_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such data folder"):
        from_folder(tmp_path / "nope")
    (tmp_path / "lab").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        from_folder(tmp_path)


def test_batches_and_waves(label_folder):
    ds = from_folder(label_folder)
    got = list(ds.batches([5, 1, 7, 3, 2], batch_size=2))
    assert [idx for _, idx in got] == [[5, 1], [7, 3], [2]]
    assert all(len(w) == len(i) for w, i in got)
    assert len(list(ds.waves([0, 1]))) == 2
    with pytest.raises(ValueError):
        next(ds.batches(batch_size=0))


# --- CSV manifests ---------------------------------------------------------------------------


def test_from_csv_relative_paths_speaker_and_extra(label_folder):
    rows = [["path", "label", "speaker", "style"]]
    rows += [
        [f"yes/spk{s}_nohash_0.wav", " yes ", f"spk{s}" if s else "", "calm"] for s in range(4)
    ]
    ds = from_csv(write_csv(label_folder / "m.csv", rows))
    assert len(ds) == 4 and ds.labels == ["yes"]
    assert ds.clips[0].speaker is None and ds.clips[1].speaker == "spk1"
    assert ds.clips[2].extra == {"style": "calm"}
    assert ds.clips[3].path == (label_folder / "yes/spk3_nohash_0.wav").resolve()
    assert ds.columns == ["label", "speaker", "style"]


def test_from_csv_bom_header(label_folder):
    path = label_folder / "bom.csv"
    path.write_text("\ufeffpath,label\nyes/spk0_nohash_0.wav,yes\n", encoding="utf-8")
    assert len(from_csv(path)) == 1


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([["file", "label"], ["a.wav", "x"]], r"lacks column\(s\) path"),
        ([["path", "speaker"], ["a.wav", "x"]], r"lacks column\(s\) label"),
        ([["path", "label"]], "no rows"),
        ([], "lacks column"),
        ([["path", "label"], ["", "x"]], "line 2 has an empty path or label"),
        ([["path", "label"], ["yes/spk0_nohash_0.wav", "x", "extra"]], "more cells"),
        (
            [
                ["path", "label"],
                ["yes/spk0_nohash_0.wav", "y"],
                ["gone1.wav", "y"],
                ["gone2.wav", "y"],
            ],
            r"2 audio file\(s\) listed but missing, first: .*gone1\.wav",
        ),
    ],
)
def test_from_csv_errors(label_folder, rows, match):
    path = write_csv(label_folder / "bad.csv", rows)
    with pytest.raises(DataError, match=match) as err:
        from_csv(path)
    assert "bad.csv" in str(err.value) and "\n" not in str(err.value)


def test_from_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such manifest"):
        from_csv(tmp_path / "m.csv")


def test_from_csv_not_utf8(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"path,label\n\xff\xfe\xfa,x\n")
    with pytest.raises(DataError, match="not UTF-8"):
        from_csv(tmp_path / "m.csv")


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: s.strip() != ""
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(labels=st.lists(_text, min_size=1, max_size=5), speaker=_text, style=_text)
def test_manifest_round_trip(tmp_path_factory, labels, speaker, style):
    folder = tmp_path_factory.mktemp("rt")
    (folder / "a.wav").write_bytes(b"x")  # only existence is checked when loading a manifest
    clips = [Clip(folder / "a.wav", lab, speaker, {"style": style}) for lab in labels]
    ds = from_csv(write_manifest(folder / "manifest.csv", clips))
    assert [c.label for c in ds.clips] == [lab.strip() for lab in labels]
    assert all(c.speaker == speaker.strip() for c in ds.clips)
    assert all(c.extra == {"style": style.strip()} for c in ds.clips)
    assert all(c.path == (folder / "a.wav").resolve() for c in ds.clips)
    assert "a.wav" in (folder / "manifest.csv").read_text(encoding="utf-8").splitlines()[1][:6]


# --- load_dataset ----------------------------------------------------------------------------


def test_load_dataset_dispatch(label_folder):
    assert len(load_dataset(label_folder)) == 12  # folder per label
    write_manifest(label_folder / "manifest.csv", from_folder(label_folder).clips[:5])
    assert len(load_dataset(label_folder)) == 5  # manifest inside wins
    assert len(load_dataset(str(label_folder / "manifest.csv"))) == 5
    with pytest.raises(DataError, match="no such data set"):
        load_dataset(label_folder / "nothing")
    with pytest.raises(DataError, match=".csv manifest"):
        load_dataset(label_folder / "README.txt")


# --- tasks and splits ------------------------------------------------------------------------


def test_task_labels():
    ds = grid_dataset()
    word = task_labels(ds, "word")
    assert word.names == ["a", "b", "c"] and word.group_by == "speaker" and word.column == "label"
    assert np.array_equal(word.ids, ds.label_ids)
    spk = task_labels(ds, "speaker")
    assert len(spk.names) == 10 and spk.group_by == "label"
    assert [spk.names[i] for i in spk.ids] == [c.speaker for c in ds.clips]
    style = task_labels(ds, "style")
    assert style.names == ["calm", "loud", "soft"] and style.group_by == "speaker"
    with pytest.raises(DataError, match="'emotion'"):
        task_labels(ds, "emotion")


def test_task_labels_without_speakers(label_folder):
    ds = AudioDataset([Clip(c.path, c.label) for c in from_folder(label_folder).clips], name="nospk")
    with pytest.warns(UserWarning, match=r"nospk: \d+ of \d+ clips have no speaker.*random"):
        labels = task_labels(ds, "word")
    assert labels.group_by is None and labels.split_kind == "random (stratified by label)"
    with pytest.raises(DataError, match="speaker"):
        task_labels(ds, "speaker")


@pytest.mark.parametrize("by", ["speaker", "label", "style", None])
def test_split_disjoint_complete_deterministic(by):
    ds = grid_dataset(n_speakers=12)
    target = "speaker" if by == "label" else "label"
    parts = split(ds, by=by, seed=3, target=target)
    assert set(parts) == {"train", "validation", "test"}
    every = sorted(i for p in parts.values() for i in p)
    assert every == list(range(len(ds)))  # a partition
    assert all(parts[s] for s in parts)
    if by is not None:
        groups = [{ds.clips[i].get(by) for i in parts[s]} for s in parts]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert parts == split(ds, by=by, seed=3, target=target)
    if by == "speaker":
        assert parts != split(ds, by=by, seed=4, target=target)
        assert 0.5 < len(parts["train"]) / len(ds) < 0.85


def test_split_errors():
    ds = grid_dataset(n_speakers=2)
    with pytest.raises(DataError, match="2 distinct value"):
        split(ds, by="speaker")
    # Splitting by label for the word task leaves test words unseen in train.
    with pytest.raises(DataError, match="no clip in train"):
        split(grid_dataset(), by="label", target="label")
    with pytest.raises(DataError, match="fractions"):
        split(ds, fractions=(0.0, 0.5, 0.5))
    with pytest.raises(DataError, match="validation split would be empty"):
        split(grid_dataset(reps=1, n_speakers=1), by=None)


def test_split_zero_fraction_means_empty():
    parts = split(grid_dataset(), by="speaker", fractions=(0.8, 0.2, 0.0))
    assert parts["test"] == [] and parts["train"] and parts["validation"]
