"""Whether pickled weights may be read: off unless the user asks (`--allow-pickle`).

Pickled checkpoints (``pytorch_model.bin``) can run code when unpickled; stackslim reads
safetensors only, unless `allow_pickle` is given or a `pickle_allowed()` block is active, and
even then through ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_ALLOW_PICKLE: ContextVar[bool] = ContextVar("stackslim_allow_pickle", default=False)


@contextmanager
def pickle_allowed(allow: bool = True) -> Iterator[None]:
    """Within the block, `load_encoder` (and `transcribe.load_whisper`) accept pickled weights
    when called without an explicit `allow_pickle`: how `--allow-pickle` reaches every load of
    one command."""
    token = _ALLOW_PICKLE.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_PICKLE.reset(token)


def pickle_is_allowed(allow_pickle: bool | None = None) -> bool:
    """`allow_pickle` when given, else the setting of the enclosing `pickle_allowed` block."""
    return _ALLOW_PICKLE.get() if allow_pickle is None else bool(allow_pickle)
