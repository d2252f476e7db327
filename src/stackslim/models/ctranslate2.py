"""Read CTranslate2 (faster-whisper) folders and turn Whisper ones into Hugging Face models.

The ``model.bin`` format (version 6, CTranslate2's own serializer), all little-endian::

    u32 version | str spec_name | u32 spec_revision | u32 n_vars
    | n_vars x (str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, raw bytes)
    | u32 n_aliases | n_aliases x (str alias, str target)

where a ``str`` is a u16 length that counts a trailing NUL, then the bytes and the NUL.
Quantized models carry ``<name>_scale`` beside int8/int16 weights (w = q / scale). Pure numpy,
no ctranslate2 needed; parts (``model.bin.part1``, ``.part2``) are streamed back to back.
`ct2_to_hf_whisper` maps a Whisper spec (revision 3) onto transformers' Whisper.
"""
from __future__ import annotations

import io
import itertools
import json
import struct
from pathlib import Path
from typing import BinaryIO, NamedTuple, Sequence

import numpy as np
import torch

from .base import EncoderError
from .whisper_config import whisper_generation_config, whisper_special_ids

SUPPORTED_VERSION = 6
# dtype id -> (numpy dtype of the raw bytes, name). bf16 has no numpy dtype: read as u16, widened.
DTYPES: dict[int, tuple[np.dtype, str]] = {
    0: (np.dtype("<f4"), "float32"), 1: (np.dtype("i1"), "int8"), 2: (np.dtype("<i2"), "int16"),
    3: (np.dtype("<i4"), "int32"), 4: (np.dtype("<f2"), "float16"), 5: (np.dtype("<u2"), "bf16")}

Source = str | Path | bytes | bytearray | Sequence[str | Path]


class Ct2Bin(NamedTuple):
    """Parsed ``model.bin``: unpacks as ``(spec_name, revision, variables, aliases)``."""

    spec_name: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]


class _Stream:
    """Sequential reads over a buffer, or over several files back to back (model.bin parts)."""

    def __init__(self, source: Source):
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.label, self._todo, self.size = "<bytes>", [bytes(source)], len(source)
        else:
            paths = [Path(source)] if isinstance(source, (str, Path)) else [Path(p) for p in source]
            if not paths:
                raise EncoderError("read_ct2_bin: no model.bin file given")
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise EncoderError(f"{missing[0]}: no such model.bin file")
            self.label = str(paths[0]) + (f" (+{len(paths) - 1} parts)" if len(paths) > 1 else "")
            self._todo, self.size = list(paths), sum(p.stat().st_size for p in paths)
        self._f: BinaryIO | None = None
        self.offset = 0  # bytes consumed over all parts

    def error(self, why: str) -> EncoderError:
        return EncoderError(f"{self.label}: corrupt CTranslate2 model.bin ({why})")

    def readinto(self, buf: memoryview) -> None:
        """Fill buf completely, crossing part boundaries; a short read means a truncated file."""
        got = 0
        while got < len(buf):
            if self._f is None:
                if not self._todo:
                    raise EncoderError(f"{self.label}: truncated CTranslate2 model.bin (needed "
                                       f"{len(buf) - got} more bytes at offset {self.offset})")
                nxt = self._todo.pop(0)  # open lazily: one part at a time
                self._f = open(nxt, "rb") if isinstance(nxt, Path) else io.BytesIO(nxt)
            n = self._f.readinto(buf[got:])
            if not n:
                self._f.close()
                self._f = None
                continue
            got += n
            self.offset += n

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        self.readinto(memoryview(buf))
        return bytes(buf)

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")
        raw = self.read(n)
        if n == 0 or raw[-1] != 0:
            raise self.error(f"bad string at offset {self.offset - n}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"non-UTF-8 name at offset {self.offset - n}") from None

    def close(self) -> None:
        self._f = self._f.close() if self._f is not None else None


def read_ct2_bin(source: Source, dequantize: bool = True) -> Ct2Bin:
    """Parse a CTranslate2 ``model.bin`` (version 6).

    Args:
        source: a path, a list of part files to read back to back, or the file's bytes.
        dequantize: replace every int8/int16 ``<name>`` that has a ``<name>_scale`` partner by
            float32 ``q / scale`` (per row for 2-D int8, scalar for int16) and drop the scale.
            bfloat16 tensors are always widened to float32 (numpy has no bf16).

    Returns:
        Ct2Bin(spec_name, revision, variables, aliases); variables keep the file's order and
        dtype (float16 stays float16), scalars are 0-d arrays.

    Raises:
        EncoderError: one line naming the file, if it is missing, truncated or corrupt.
    """
    s = _Stream(source)
    try:
        (version,) = s.unpack("I")
        if version != SUPPORTED_VERSION:
            raise EncoderError(f"{s.label}: not a CTranslate2 model.bin version "
                               f"{SUPPORTED_VERSION} (header says version {version})")
        spec_name = s.string()
        revision, n_vars = s.unpack("II")
        variables: dict[str, np.ndarray] = {}
        for _ in range(n_vars):
            name = s.string()
            (rank,) = s.unpack("B")
            dims = s.unpack("I" * rank)  # a garbled rank fails the byte count check below
            dtype_id, nbytes = s.unpack("BI")
            if dtype_id not in DTYPES:
                raise s.error(f"{name!r} has unknown dtype id {dtype_id}")
            dt, dt_name = DTYPES[dtype_id]
            count = int(np.prod(dims, dtype=np.int64))
            if count * dt.itemsize != nbytes:
                raise s.error(f"{name!r}: {nbytes} bytes for shape {tuple(dims)} {dt_name}")
            if nbytes > s.size - s.offset:  # before allocating: a cut file can claim gigabytes
                raise EncoderError(f"{s.label}: truncated CTranslate2 model.bin ({name!r} needs "
                                   f"{nbytes} bytes, {s.size - s.offset} left)")
            arr = np.empty(count, dtype=dt)  # writable, filled straight from the file
            s.readinto(memoryview(arr).cast("B"))
            if dtype_id == 5:  # bf16 = the high half of a float32
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            variables[name] = arr.reshape(dims)
        (n_aliases,) = s.unpack("I")
        aliases = {}
        for _ in range(n_aliases):
            alias = s.string()
            aliases[alias] = s.string()
        if s.offset != s.size:
            raise s.error(f"{s.size - s.offset} extra bytes after the aliases")
    finally:
        s.close()
    bad = [(a, t) for a, t in aliases.items() if t not in variables]
    if bad:
        raise s.error(f"alias {bad[0][0]!r} points to missing {bad[0][1]!r}")
    if dequantize:
        variables = dequantize_variables(variables, s.label)
    return Ct2Bin(spec_name, int(revision), variables, aliases)


def dequantize_variables(variables: dict[str, np.ndarray], label: str = "model.bin"
                         ) -> dict[str, np.ndarray]:
    """Replace each quantized ``<name>`` + ``<name>_scale`` by float32 ``q / scale``.

    CTranslate2 quantizes with ``q = round(w * scale)``: int8 has one scale per output row
    (``scale = 127 / max|w_row|``), int16 one scalar; so the inverse is a division.
    """
    out: dict[str, np.ndarray] = {}
    for name, arr in variables.items():
        base = variables.get(name[: -len("_scale")]) if name.endswith("_scale") else None
        if base is not None and base.dtype.kind == "i":
            continue  # consumed together with its weight
        scale = variables.get(name + "_scale")
        if scale is not None and arr.dtype.kind == "i":
            sc = scale.astype(np.float32)
            if sc.ndim == 1 and arr.ndim >= 1 and sc.shape[0] == arr.shape[0]:
                sc = sc.reshape((-1,) + (1,) * (arr.ndim - 1))  # (out, 1, ...) per row
            elif sc.size != 1:
                raise EncoderError(f"{label}: scale {name}_scale of shape {scale.shape} does "
                                   f"not fit {name} of shape {arr.shape}")
            arr = arr.astype(np.float32) / sc
        out[name] = arr
    return out


# -- Whisper (WhisperSpec, revision 3) -> transformers.WhisperForConditionalGeneration --------
# Scalars that HF's Whisper architecture needs at these values (activation 3 = GELU, erf), and
# scalars read for the config or irrelevant here (alibi options matter only with alibi on).
_EXPECTED_SCALARS = {"activation": 3, "pre_norm": 1, "alibi": 0, "scale_embeddings": 0,
                     "start_from_zero_embedding": 0}
_INFO_SCALARS = {"num_heads", "alignment_heads", "alignment_layer", "alibi_use_positive_positions",
                 "scale_alibi"}


def ct2_files(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], dict[str, Path], str]:
    """Sort a ct2 folder, or a list of its files, into model.bin parts and side files.

    Returns (model.bin parts in reading order, {file name: path} for config.json,
    tokenizer.json, vocabulary.*, label for messages).
    """
    if isinstance(source, (str, Path)):
        if not Path(source).is_dir():
            raise EncoderError(f"{source}: not a folder (expected a CTranslate2 model folder)")
        paths, label = sorted(Path(source).iterdir()), str(source)
    else:
        paths = [Path(p) for p in source]
        label = str(paths[0].parent) if paths else "<no files>"
    whole = [p for p in paths if p.name == "model.bin"]
    parts = [p for p in paths if p.name.startswith("model.bin.part")]
    if isinstance(source, (str, Path)):  # a folder lists part10 before part2: sort by number
        parts.sort(key=lambda p: int("0" + "".join(c for c in p.name[14:] if c.isdigit())))
    if not whole and not parts:
        raise EncoderError(f"{label}: not a CTranslate2 model (no model.bin or model.bin.part*)")
    side = {p.name: p for p in paths if p not in whole and p not in parts}
    return whole or parts, side, label


def ct2_vocabulary(side: dict[str, Path], label: str) -> dict[str, int]:
    """token -> id, from vocabulary.txt / vocabulary.json (CTranslate2) or tokenizer.json."""
    if "vocabulary.txt" in side:
        lines = side["vocabulary.txt"].read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return {tok: i for i, tok in enumerate(lines)}
    if "vocabulary.json" in side:
        return {tok: i for i, tok in enumerate(json.loads(side["vocabulary.json"].read_text()))}
    if "tokenizer.json" in side:
        tj = json.loads(side["tokenizer.json"].read_text(encoding="utf-8"))
        vocab = dict(tj.get("model", {}).get("vocab", {}))
        vocab.update({t["content"]: t["id"] for t in tj.get("added_tokens", [])})
        return vocab
    raise EncoderError(f"{label}: no vocabulary.txt, vocabulary.json or tokenizer.json beside "
                       "model.bin (needed for Whisper's special-token ids)")


def _whisper_state_dict(v: dict[str, np.ndarray], aliases: dict[str, str], n_enc: int,
                        n_dec: int, label: str) -> tuple[dict, set[str], bool]:
    """Map every ct2 variable to an HF name. Returns (state dict, used ct2 names, tied)."""
    sd: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in v:
            raise EncoderError(f"{label}: CTranslate2 Whisper variable {name!r} is missing")
        used.add(name)
        return torch.from_numpy(np.array(v[name], dtype=np.float32))  # own float32 copy

    def linear(hf: str, ct2: str) -> None:
        sd[hf + ".weight"], sd[hf + ".bias"] = take(ct2 + "/weight"), take(ct2 + "/bias")

    def norm(hf: str, ct2: str) -> None:
        sd[hf + ".weight"], sd[hf + ".bias"] = take(ct2 + "/gamma"), take(ct2 + "/beta")

    def fused(hfs: list[str], ct2: str) -> None:
        """Split a fused projection (n*d, d) in n; 'k_proj' has no bias in HF (zero in ct2)."""
        ws = take(ct2 + "/weight").chunk(len(hfs), dim=0)  # n x (d, d)
        bs = take(ct2 + "/bias").chunk(len(hfs), dim=0)  # n x (d,)
        for hf, w, b in zip(hfs, ws, bs):
            sd[hf + ".weight"] = w.clone()
            if not hf.endswith("k_proj"):
                sd[hf + ".bias"] = b.clone()
            elif b.abs().max().item() > 1e-6:  # then the layout is not (Q, K, V) as assumed
                raise EncoderError(f"{label}: {ct2}/bias has a non-zero K slice: not the "
                                   "fused Q,K,V layout of a Whisper spec")

    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        m = f"model.{side}"
        norm(f"{m}.layer_norm", f"{side}/layer_norm")
        sd[f"{m}.embed_positions.weight"] = take(f"{side}/position_encodings/encodings")
        for i in range(n):
            hl, cl = f"{m}.layers.{i}", f"{side}/layer_{i}"
            a = f"{hl}.self_attn"
            fused([f"{a}.q_proj", f"{a}.k_proj", f"{a}.v_proj"], f"{cl}/self_attention/linear_0")
            linear(f"{a}.out_proj", f"{cl}/self_attention/linear_1")
            norm(f"{hl}.self_attn_layer_norm", f"{cl}/self_attention/layer_norm")
            if side == "decoder":
                c = f"{hl}.encoder_attn"
                linear(f"{c}.q_proj", f"{cl}/attention/linear_0")
                fused([f"{c}.k_proj", f"{c}.v_proj"], f"{cl}/attention/linear_1")
                linear(f"{c}.out_proj", f"{cl}/attention/linear_2")
                norm(f"{hl}.encoder_attn_layer_norm", f"{cl}/attention/layer_norm")
            linear(f"{hl}.fc1", f"{cl}/ffn/linear_0")
            linear(f"{hl}.fc2", f"{cl}/ffn/linear_1")
            norm(f"{hl}.final_layer_norm", f"{cl}/ffn/layer_norm")
    for k in (1, 2):
        linear(f"model.encoder.conv{k}", f"encoder/conv{k}")
    emb = sd["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    tied = True
    proj = "decoder/projection/weight"
    if proj in aliases:
        if aliases[proj] != "decoder/embeddings/weight":
            raise EncoderError(f"{label}: alias {proj} -> {aliases[proj]}, expected the embeddings")
    elif proj in v:  # stored untied: keep it tied only if it is the same matrix
        p = take(proj)
        tied = p.shape == emb.shape and bool(torch.equal(p, emb))
        sd["proj_out.weight"] = p
    else:
        raise EncoderError(f"{label}: no output projection ({proj}) in the model")
    for name, val in v.items():  # scalars: check the architecture, consume
        base = name.rsplit("/", 1)[-1]
        if val.ndim == 0 and name.split("/")[0] in ("encoder", "decoder") and name.count("/") == 1:
            if base in _EXPECTED_SCALARS and int(val) != _EXPECTED_SCALARS[base]:
                raise EncoderError(f"{label}: {name} = {int(val)}, but HF Whisper needs "
                                   f"{_EXPECTED_SCALARS[base]}")
            if base in _EXPECTED_SCALARS or base in _INFO_SCALARS:
                used.add(name)
    return sd, used, tied


def ct2_to_hf_whisper(source: str | Path | Sequence[str | Path]):
    """Convert a CTranslate2 Whisper model to ``transformers.WhisperForConditionalGeneration``.

    Args:
        source: the ct2 folder, or its files (model.bin or model.bin.part1..N in order,
            config.json, and tokenizer.json or vocabulary.*), possibly from several folders.

    Returns:
        The float32 model in eval mode, with a `generation_config` whose special-token ids
        (decoder start, language, task, no-timestamps) come from the model's own vocabulary.

    Raises:
        EncoderError: one line naming the file: not a ct2 Whisper model, a truncated or corrupt
            model.bin, a variable left unmapped, or an HF parameter without a ct2 source.
    """
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    parts, side, label = ct2_files(source)
    spec, revision, v, aliases = read_ct2_bin(parts)
    blabel = str(parts[0]) + (f" (+{len(parts) - 1} parts)" if len(parts) > 1 else "")
    if spec != "WhisperSpec":
        raise EncoderError(f"{blabel}: not a Whisper model (CTranslate2 spec {spec!r})")
    try:
        ct2cfg = json.loads(side["config.json"].read_text()) if "config.json" in side else {}
    except ValueError as e:  # also UnicodeDecodeError
        raise EncoderError(f"{side['config.json']}: not valid JSON ({e})") from None

    n_enc, n_dec = (next(i for i in itertools.count()  # layers are numbered 0..n-1
                         if f"{side_}/layer_{i}/self_attention/linear_0/weight" not in v)
                    for side_ in ("encoder", "decoder"))
    try:
        d, n_mels, _ = v["encoder/conv1/weight"].shape  # (D, n_mels, 3)
        vocab_size = v["decoder/embeddings/weight"].shape[0]
        enc_heads, dec_heads = int(v["encoder/num_heads"]), int(v["decoder/num_heads"])
        enc_ffn = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
        dec_ffn = v["decoder/layer_0/ffn/linear_0/weight"].shape[0]
        n_src = v["encoder/position_encodings/encodings"].shape[0]
        n_tgt = v["decoder/position_encodings/encodings"].shape[0]
    except (KeyError, ValueError) as e:
        raise EncoderError(f"{blabel}: not a CTranslate2 Whisper model (missing or malformed "
                           f"{e})") from None
    multilingual = vocab_size >= 51865  # OpenAI's rule: English-only models have 51864 tokens
    vocab = ct2_vocabulary(side, label)
    ids = whisper_special_ids(vocab, multilingual, label)
    sd, used, tied = _whisper_state_dict(v, aliases, n_enc, n_dec, blabel)
    unused = [n for n in v if n not in used]
    unused += [a for a in aliases if a != "decoder/projection/weight"]
    if unused:
        raise EncoderError(f"{blabel}: {len(unused)} CTranslate2 variable(s) left unmapped, "
                           f"e.g. {unused[0]!r} (spec revision {revision})")
    suppress = list(ct2cfg.get("suppress_ids", []))
    begin_suppress = list(ct2cfg.get("suppress_ids_begin", [220, ids["eot"]]))
    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=n_mels, d_model=d,
        encoder_layers=n_enc, decoder_layers=n_dec,
        encoder_attention_heads=enc_heads, decoder_attention_heads=dec_heads,
        encoder_ffn_dim=enc_ffn, decoder_ffn_dim=dec_ffn,
        max_source_positions=n_src, max_target_positions=n_tgt,
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=tied,
        decoder_start_token_id=ids["sot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        pad_token_id=ids["eot"], suppress_tokens=suppress, begin_suppress_tokens=begin_suppress)
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = WhisperForConditionalGeneration(config)
    expected = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    if tied:
        sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise EncoderError(f"{blabel}: HF Whisper parameter {missing[0]!r} has no CTranslate2 "
                           f"source ({len(missing)} missing)")
    bad = sorted(set(sd) - set(expected)) + [k for k in expected if sd[k].shape != expected[k]]
    if bad:
        raise EncoderError(f"{blabel}: mapped {bad[0]!r} does not fit HF Whisper "
                           f"({tuple(sd[bad[0]].shape)} vs {expected.get(bad[0])})")
    model.load_state_dict(sd, strict=True, assign=True)
    if tied:
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    model.generation_config = whisper_generation_config(
        ids, multilingual, n_tgt, vocab, suppress=suppress, begin_suppress=begin_suppress,
        lang_ids=ct2cfg.get("lang_ids", []), alignment_heads=ct2cfg.get("alignment_heads", []))
    return model.eval()
