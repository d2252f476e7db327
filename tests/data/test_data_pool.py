"""`unlabelled_clips`: the clips of `--unlabelled SPEC --max-unlabelled N` (mimic and share)."""
from __future__ import annotations

import pytest

from stackslim.data import DataError, load_dataset, unlabelled_clips


def test_all_clips_or_a_seeded_sorted_subset(label_folder):
    ds, idx = unlabelled_clips(str(label_folder))
    assert idx == list(range(12)) and len(ds) == 12
    _, a = unlabelled_clips(label_folder, max_clips=5, seed=3)
    _, b = unlabelled_clips(load_dataset(label_folder), max_clips=5, seed=3)  # a data set works too
    assert a == b == sorted(set(a)) and len(a) == 5 and all(0 <= i < 12 for i in a)
    assert unlabelled_clips(label_folder, max_clips=50)[1] == list(range(12))


def test_bad_spec_or_count_names_the_option(tmp_path, label_folder):
    with pytest.raises(DataError, match=r"^--unlabelled .*nowhere: no such data set"):
        unlabelled_clips(tmp_path / "nowhere")
    with pytest.raises(DataError, match="--max-unlabelled must be >= 0"):
        unlabelled_clips(label_folder, max_clips=-1)


def test_clips_held_out_for_evaluation_are_left_out(label_folder):
    from stackslim.data import Clip, write_manifest

    wavs = sorted(label_folder.rglob("spk*.wav"))[:4]
    splits = ["eval", "pool", "test", ""]
    write_manifest(label_folder / "m.csv", [Clip(path=w, label="x", extra={"split": s})
                                            for w, s in zip(wavs, splits)])
    assert unlabelled_clips(label_folder / "m.csv")[1] == [1, 3]
    write_manifest(label_folder / "e.csv", [Clip(path=wavs[0], label="x", extra={"split": "eval"})])
    with pytest.raises(DataError, match="held out for evaluation"):
        unlabelled_clips(label_folder / "e.csv")


def test_joined_sets_take_at_most_n_of_each_interleaved(label_folder):
    from stackslim.data import Clip, write_manifest
    from stackslim.data.pool import unlabelled_specs

    wavs = sorted(label_folder.rglob("spk*.wav"))
    write_manifest(label_folder / "a.csv", [Clip(path=w, label="a", extra={"language": "de"})
                                            for w in wavs[:5]])
    write_manifest(label_folder / "b.csv", [Clip(path=w, label="b") for w in wavs[5:7]])
    a, b = str(label_folder / "a.csv"), str(label_folder / "b.csv")
    assert unlabelled_specs(f"{a}+{b}") == [a, b] and unlabelled_specs(a) == [a]
    ds, idx = unlabelled_clips(f"{a}+{b}")
    assert idx == list(range(7)) and ds.name == "a+b"
    # one of each set in turn while both have clips, then the rest of the longer one
    assert [c.label for c in ds.clips] == ["a", "b", "a", "b", "a", "a", "a"]
    assert [c.path for c in ds.clips if c.label == "a"] == [Clip(path=w, label="a").path for w in wavs[:5]]
    assert ds.clips[0].get("language") == "de" and ds.clips[1].get("language") is None
    ds3, idx3 = unlabelled_clips(f"{a}+{b}", max_clips=3, seed=1)  # at most 3 of each
    assert len(idx3) == 5 and [c.label for c in ds3.clips].count("a") == 3
    sub = {c.path for c in ds3.clips if c.label == "a"}
    assert sub == {load_dataset(a).clips[i].path for i in unlabelled_clips(a, 3, seed=1)[1]}


def test_joined_sets_name_the_bad_part(label_folder, tmp_path):
    with pytest.raises(DataError, match=r"^--unlabelled .*nowhere: no such data set"):
        unlabelled_clips(f"{label_folder}+{tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="empty data set spec"):
        unlabelled_clips(f"{label_folder}+")
