"""Audio data for stackslim: reading (mono, 16 kHz, clear errors), folder/CSV data sets,
group-disjoint splits, and the offline synthetic data sets.

Example::

    from stackslim.data import load_dataset, task_labels, split
    ds = load_dataset("synth-commands")          # built offline on first use
    task = task_labels(ds, "word")               # classes, ids, and the column to split by
    parts = split(ds, by=task.group_by, target=task.column)
    for waves, idx in ds.batches(parts["train"], batch_size=16):
        ...
"""

from .audio import (
    SAMPLE_RATE,
    AudioError,
    Wave,
    clip_name,
    fit_length,
    peak_normalize,
    read_audio,
    resample,
    trim_silence,
    write_wav,
)
from .datasets import (
    SYNTH_NAMES,
    AudioDataset,
    Clip,
    DataError,
    TaskLabels,
    default_cache_dir,
    from_csv,
    from_folder,
    load_dataset,
    split,
    task_labels,
    write_manifest,
)
from .pool import unlabelled_clips
from .synth import COMMAND_WORDS, TRANSLATE_VOICES, build, synth_main
from .translate_sentences import LANGUAGES, check_translation_rows, translation_pairs
from .tts import CLEAR_VOICES, COMMAND_VOICES, STYLES, Voice

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "Wave",
    "clip_name",
    "fit_length",
    "peak_normalize",
    "read_audio",
    "resample",
    "trim_silence",
    "write_wav",
    "SYNTH_NAMES",
    "AudioDataset",
    "Clip",
    "DataError",
    "TaskLabels",
    "default_cache_dir",
    "from_csv",
    "from_folder",
    "load_dataset",
    "split",
    "task_labels",
    "unlabelled_clips",
    "write_manifest",
    "CLEAR_VOICES",
    "COMMAND_VOICES",
    "COMMAND_WORDS",
    "LANGUAGES",
    "TRANSLATE_VOICES",
    "check_translation_rows",
    "translation_pairs",
    "STYLES",
    "Voice",
    "build",
    "synth_main",
]
