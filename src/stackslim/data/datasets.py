"""Labelled audio data sets: a folder per label or a CSV manifest, and the synthetic sets.

A data set is a list of :class:`Clip` (path + label + speaker + any other columns). Audio is read
lazily by :meth:`AudioDataset.load`, so a data set of any size costs only its manifest in memory.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .audio import AUDIO_EXTENSIONS, Wave, read_audio
from .synth import CACHE_FOLDERS, MANIFEST
from .synth import build as build_synth

SYNTH_NAMES = ("synth-commands", "synth-sentences", "synth-translate")
REQUIRED_COLUMNS = ("path", "label")



@dataclass
class Clip:
    """One labelled audio clip.

    Attributes:
        path: absolute path of the audio file.
        label: the clip's label (a word, a transcript, ...).
        speaker: speaker id, or None when unknown.
        extra: every other manifest column, by name (values are strings).
    """

    path: Path
    label: str
    speaker: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def get(self, column: str) -> str | None:
        """Value of a column by name: ``label``, ``speaker``, ``path`` or an ``extra`` column."""
        if column == "label":
            return self.label
        if column == "speaker":
            return self.speaker
        if column == "path":
            return str(self.path)
        return self.extra.get(column)


class AudioDataset:
    """A list of clips with lazy audio loading.

    Args:
        clips: the clips, in a fixed order (indices refer to it).
        name: a short name for messages and results.
    """

    def __init__(self, clips: Sequence[Clip], name: str = "dataset") -> None:
        self.clips = list(clips)
        self.name = name
        self.labels: list[str] = sorted({c.label for c in self.clips})
        index = {lab: i for i, lab in enumerate(self.labels)}
        self.label_ids = np.array([index[c.label] for c in self.clips], dtype=np.int64)  # (N,)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> Clip:
        return self.clips[i]

    def __repr__(self) -> str:
        return f"AudioDataset({self.name!r}, {len(self)} clips, {len(self.labels)} labels)"

    @property
    def columns(self) -> list[str]:
        """Column names available to :meth:`Clip.get` (label, speaker, then extra columns)."""
        extra = sorted({k for c in self.clips for k in c.extra})
        return ["label", "speaker", *extra]

    def load(self, i: int) -> Wave:
        """Audio of clip ``i`` as float32 mono 16 kHz, shape (T,), that knows its file
        (`Wave.path`), so that an encoder's error about the clip names it."""
        path = self.clips[i].path
        return Wave.of(read_audio(path), path)

    def waves(self, indices: Sequence[int] | None = None) -> Iterator[np.ndarray]:
        """Yield the audio of the given clips (all clips when None), one at a time."""
        for i in range(len(self)) if indices is None else indices:
            yield self.load(int(i))

    def batches(
        self, indices: Sequence[int] | None = None, batch_size: int = 8
    ) -> Iterator[tuple[list[np.ndarray], list[int]]]:
        """Yield ``(waves, indices)`` in batches of at most ``batch_size`` clips, in order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        idx = [int(i) for i in (range(len(self)) if indices is None else indices)]
        for s in range(0, len(idx), batch_size):
            chunk = idx[s : s + batch_size]
            yield [self.load(i) for i in chunk], chunk

    def subset(self, indices: Sequence[int]) -> AudioDataset:
        """A new data set with the given clips (labels recomputed)."""
        return AudioDataset([self.clips[int(i)] for i in indices], name=self.name)


# ---------------------------------------------------------------------------------------------
# Loaders


def from_folder(root: str | os.PathLike) -> AudioDataset:
    """Load a folder with one sub-folder per label and audio files inside (searched recursively).

    Sub-folders whose name starts with ``_`` or ``.`` are skipped (Speech Commands keeps its
    ``_background_noise_`` there). Files named ``<speaker>_nohash_<k>.wav`` (the Speech Commands
    convention) get that speaker; otherwise the speaker is None.

    Raises:
        DataError: the folder is missing or holds no audio in label sub-folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    clips = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name.startswith(("_", ".")):
            continue
        for f in sorted(sub.rglob("*")):
            if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS:
                speaker = f.name.split("_nohash_")[0] if "_nohash_" in f.name else None
                clips.append(Clip(path=f.resolve(), label=sub.name, speaker=speaker))
    if not clips:
        raise DataError(
            f"{root}: no audio files found in label sub-folders (expected <label>/<file>.wav "
            f"or a {MANIFEST})"
        )
    return AudioDataset(clips, name=root.name)


def from_csv(path: str | os.PathLike) -> AudioDataset:
    """Load a CSV manifest with a header.

    Required columns ``path`` and ``label``; ``speaker`` is optional (empty cells mean unknown);
    every other column is kept in :attr:`Clip.extra`. Relative paths are resolved against the
    folder of the CSV. Cells are stripped of surrounding spaces.

    Raises:
        DataError: missing file or columns, no rows, empty path/label cells, or audio files that
            do not exist (the first one is named, with the count).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such manifest file")
    base = path.parent.resolve()
    try:
        # utf-8-sig: manifests saved by spreadsheet programs start with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise DataError(
                    f"{path}: manifest lacks column(s) {', '.join(missing)} "
                    f"(has: {', '.join(header) or 'no header'})"
                )
            reader.fieldnames = header
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: manifest is not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e})") from None
    if not rows:
        raise DataError(f"{path}: manifest has no rows")
    clips, missing_files = [], []
    for line, row in enumerate(rows, start=2):
        if None in row:  # more cells than header columns
            raise DataError(f"{path}: line {line} has more cells than the header")
        cells = {k: (v or "").strip() for k, v in row.items()}
        if not cells["path"] or not cells["label"]:
            raise DataError(f"{path}: line {line} has an empty path or label")
        audio = Path(cells.pop("path"))
        audio = audio if audio.is_absolute() else base / audio
        if not audio.is_file():
            missing_files.append(audio)
        label = cells.pop("label")
        speaker = cells.pop("speaker", "") or None
        clips.append(Clip(path=audio, label=label, speaker=speaker, extra=cells))
    if missing_files:
        raise DataError(
            f"{path}: {len(missing_files)} audio file(s) listed but missing, "
            f"first: {missing_files[0]}"
        )
    return AudioDataset(clips, name=path.parent.name if path.name == MANIFEST else path.stem)


def write_manifest(path: str | os.PathLike, clips: Sequence[Clip], relative: bool = True) -> Path:
    """Write clips as a CSV manifest that :func:`from_csv` reads back.

    Args:
        path: the CSV to write (atomically).
        clips: the clips; columns are path, label, speaker, then the union of extra columns.
        relative: write paths relative to the CSV's folder when they are inside it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for c in clips for k in c.extra} - {"path", "label", "speaker"})
    base = path.parent.resolve()
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker", *extra])
        for c in clips:
            p = Path(c.path)
            if relative and p.is_absolute() and p.resolve().is_relative_to(base):
                p = p.resolve().relative_to(base)
            w.writerow(
                [p.as_posix(), c.label, c.speaker or "", *(c.extra.get(k, "") for k in extra)]
            )
    os.replace(tmp, path)
    return path


def default_cache_dir() -> Path:
    """``$STACKSLIM_CACHE`` or ``~/.cache/stackslim``."""
    env = os.environ.get("STACKSLIM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stackslim"


def load_dataset(
    spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> AudioDataset:
    """Load a data set from a folder, a CSV manifest, or a synthetic set's name.

    Args:
        spec: a folder (``manifest.csv`` inside → CSV, else a folder per label), a ``.csv``
            file, or ``synth-commands`` / ``synth-sentences`` (built into
            ``<cache>/data/<folder>`` on first use, offline, then loaded; the folder is
            ``synth.CACHE_FOLDERS[name]``).
        cache_dir: where synthetic sets live; default :func:`default_cache_dir`.

    Raises:
        DataError: the spec is none of these, or the data is unusable.
    """
    if str(spec) in SYNTH_NAMES:
        name = str(spec)
        out = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        folder = build_synth(name, out / "data" / CACHE_FOLDERS[name])
        ds = from_csv(folder / MANIFEST)
        ds.name = name
        return ds
    p = Path(spec)
    if p.is_dir():
        return from_csv(p / MANIFEST) if (p / MANIFEST).is_file() else from_folder(p)
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise DataError(f"{p}: a data set file must be a .csv manifest")
        return from_csv(p)
    raise DataError(
        f"{spec}: no such data set (give a folder, a .csv manifest, or one of "
        f"{', '.join(SYNTH_NAMES)})"
    )


# ---------------------------------------------------------------------------------------------
# Tasks and splits

SPLITS = ("train", "validation", "test")


class TaskLabels(NamedTuple):
    """Targets of a classification task: ``names[ids[i]]`` is clip i's class."""

    names: list[str]
    ids: np.ndarray  # (N,) int64
    group_by: str | None  # column to keep disjoint across splits (None: split clips freely)
    column: str  # the column the classes come from
    split_kind: str = ""  # how the splits are made, for results: "by speaker", "random", ...


def task_labels(dataset: AudioDataset, task: str) -> TaskLabels:
    """Classes of a task and the column that keeps train/validation/test apart.

    ``word``/``label`` classify the label column and split by speaker (unseen speakers at test
    time); ``speaker`` classifies speakers and splits by label (unseen words at test time, so a
    probe cannot win by recognising the word); any other column (e.g. ``style``) splits by speaker.
    When a clip has no speaker the splits are random (stratified by class), with a warning naming
    the data set: a speaker may then be heard in train and in test. `TaskLabels.split_kind` says
    which was done.

    Raises:
        DataError: the column is missing or empty for some clip.
    """
    column = "label" if task in ("word", "label") else task
    values = [c.get(column) for c in dataset.clips]
    if column != "label" and any(v in (None, "") for v in values):
        n = sum(v in (None, "") for v in values)
        raise DataError(
            f"{dataset.name}: task {task!r} needs column {column!r}, which {n} of "
            f"{len(values)} clips lack (columns: {', '.join(dataset.columns)})"
        )
    names = sorted(set(values))  # type: ignore[arg-type]
    index = {v: i for i, v in enumerate(names)}
    ids = np.array([index[v] for v in values], dtype=np.int64)
    no_speaker = sum(not c.speaker for c in dataset.clips)
    if column == "speaker":
        group_by = "label"
    elif no_speaker == 0:
        group_by = "speaker"
    else:
        group_by = None
        warnings.warn(f"{dataset.name}: {no_speaker} of {len(dataset)} clips have no speaker, so the "
                      f"train/validation/test splits are random (stratified by {column}), not by "
                      "speaker: a speaker may be heard in train and in test", stacklevel=2)
    kind = f"by {group_by}" if group_by else f"random (stratified by {column})"
    return TaskLabels(names, ids, group_by, column, kind)


def split(
    dataset: AudioDataset,
    by: str | None = "speaker",
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    target: str | None = "label",
) -> dict[str, list[int]]:
    """Split clip indices into train/validation/test with disjoint groups.

    With ``by`` a column (``speaker``, ``label`` or an extra column), every value of it falls in
    exactly one split; groups are shuffled with ``seed`` and given greedily to the split furthest
    below its share of clips. With ``by=None`` clips are split per class of ``target``
    (stratified). A split whose fraction is 0 is empty.

    Args:
        dataset: the data set.
        by: the grouping column, or None.
        fractions: shares of train, validation, test (normalised to sum 1).
        seed: shuffling seed; the same seed gives the same split.
        target: the task's class column; each of its classes must have a clip in train.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``, sorted indices.

    Raises:
        DataError: a split with a positive fraction would be empty, or a class of ``target``
            has no clip in train.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or fr.sum() <= 0 or fr[0] <= 0:
        raise DataError(f"{dataset.name}: fractions must be 3 non-negative numbers, train > 0")
    fr = fr / fr.sum()
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    wanted = [i for i in range(3) if fr[i] > 0]
    if by is None:
        tgt = target or "label"
        by_class: dict[str | None, list[int]] = {}
        for i, c in enumerate(dataset.clips):
            by_class.setdefault(c.get(tgt), []).append(i)
        for key in sorted(by_class, key=str):
            idx = np.array(by_class[key])[rng.permutation(len(by_class[key]))]
            counts = np.floor(fr * len(idx)).astype(int)
            counts[0] += len(idx) - counts.sum()  # remainders go to train
            for s, part in zip(SPLITS, np.split(idx, np.cumsum(counts)[:-1]), strict=True):
                out[s].extend(int(i) for i in part)
    else:
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(dataset.clips):
            g = c.get(by)
            if g in (None, ""):
                raise DataError(f"{dataset.name}: cannot split by {by!r}: clip {i} has no {by}")
            groups.setdefault(g, []).append(i)
        keys = sorted(groups)
        keys = [keys[j] for j in rng.permutation(len(keys))]
        if len(keys) < len(wanted):
            raise DataError(
                f"{dataset.name}: cannot split by {by!r}: {len(keys)} distinct value(s) for "
                f"{len(wanted)} non-empty splits"
            )
        total = len(dataset)
        sizes = np.zeros(3)
        for j, key in enumerate(keys):
            # Seed each wanted split with one group, then fill the one furthest below its share.
            s = wanted[j] if j < len(wanted) else int(np.argmax(fr * total - sizes))
            out[SPLITS[s]].extend(groups[key])
            sizes[s] += len(groups[key])
    for s, f in zip(SPLITS, fr, strict=True):
        out[s].sort()
        if f > 0 and not out[s]:
            raise DataError(f"{dataset.name}: the {s} split would be empty ({len(dataset)} clips)")
    if target is not None:
        train_classes = {dataset.clips[i].get(target) for i in out["train"]}
        absent = sorted(
            {str(c.get(target)) for c in dataset.clips} - {str(v) for v in train_classes}
        )
        if absent:
            raise DataError(
                f"{dataset.name}: {len(absent)} {target} class(es) have no clip in train when "
                f"splitting by {by!r}, first: {absent[0]!r}"
            )
    return out
