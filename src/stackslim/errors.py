"""The one error hierarchy of stackslim.

Every error that means "this input cannot be used" derives from `StackslimError`; the CLI
catches the root, prints its one-line message naming the input, and exits with status 2.
Anything else is a bug and keeps its traceback.

    StackslimError
    ├── AudioError, DataError          data/: an audio file, a data set
    ├── EncoderError                   models/: a model spec, folder or argument
    ├── OutputError                    an output location (unwritable, an input, locked)
    ├── DeviceError                    a --device this machine does not have
    └── one per method, in its config.py: SimilarityError, PruneError, MimicError,
        ShareError, StudyError, ExportError
"""
from __future__ import annotations


class StackslimError(ValueError):
    """Bad input: the message is one line and names the input (file, folder, option)."""


class AudioError(StackslimError):
    """An audio file that cannot be used; the message is one line and names the file."""


class DataError(StackslimError):
    """A data set that cannot be used; the message is one line and names the file or folder."""


class EncoderError(StackslimError):
    """A model spec, folder or argument that stackslim cannot use (one-line message)."""


class OutputError(StackslimError):
    """An output location stackslim cannot write to (or must not: an input, a folder in use)."""


class DeviceError(StackslimError):
    """A --device that does not exist on this machine (one-line message)."""
