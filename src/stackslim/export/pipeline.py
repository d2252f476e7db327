"""`run(model_dir, out, cfg) -> ExportResult`: export a model folder to ONNX or CTranslate2.

    from stackslim.export import ExportConfig, run
    res = run("runs/share/model", "runs/share/onnx", ExportConfig(format="onnx", int8=True))
    res.parity["max_abs_diff"]        # float ONNX vs PyTorch on valid frames

What is read: anything `load_encoder` reads (a teacher folder or name, a pruned folder with its
head, a shared folder, a mimic folder with its head, or an ASR mimic folder of
`stackslim mimic --task asr`, whose last state the teacher's Whisper decoder reads: exported
without logits, ONNX only). What is written, atomically (a temporary folder renamed into
`out`; a failure leaves nothing):

- onnx: ``model.onnx`` (+ ``model.int8.onnx`` with int8), ``export.json``;
- ct2:  the CTranslate2 folder (``model.bin``, ``config.json``, ``vocabulary.json``,
  ``tokenizer.json``, ``preprocessor_config.json``; with int8 also ``int8/``), ``export.json``.

``export.json`` says what was exported, from where, for which task (``classification``: logits
from the head; ``asr``: the states a Whisper decoder reads; ``encoder``: states only), the
graph's inputs and outputs, the file sizes, and the parity measured on a padded batch of clips
of different lengths. `export_loaded` exports a model already in memory (the study's variants).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EncoderError, StackslimError
from ..mimic.model import MimicModel
from ..models import load_encoder
from ..prune.save import load_head
from ..share.io import is_shared_folder
from ..share.load import load_shared
from ..results import atomic_dir, provenance, write_json
from ..run import check_not_input, input_paths
from .config import ExportConfig, ExportError

EXPORT_JSON = "export.json"


@dataclass
class ExportResult:
    """What one export wrote and measured."""

    source: str
    out: str
    kind: str  # teacher, pruned, shared, mimic
    family: str
    format: str
    files: dict[str, int]  # name → bytes
    inputs: dict[str, str]
    outputs: dict[str, str]
    exporter: str
    parity: dict[str, Any]
    int8: dict[str, Any] | None = None
    onnx_graph: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    task: str = ""  # classification (logits), asr (states for a Whisper decoder), encoder

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Loaded:
    """A model folder as the exporter sees it."""

    kind: str
    model: Any  # an Encoder, or a MimicModel
    head: Any  # the task head, or None
    encoder: Any  # the Encoder whose family and front end the graph uses
    source: Path | None

    @property
    def task(self) -> str:
        """classification (a head: logits), asr (a mimic without a head, trained for the
        teacher's Whisper decoder: `stackslim mimic --task asr`) or encoder (states only)."""
        if self.head is not None:
            return "classification"
        return "asr" if self.kind == "mimic" else "encoder"


def load_model(spec: str | os.PathLike, decoder: bool = True) -> Loaded:
    """Recognise and load `spec`: shared, mimic, pruned (with head) or a plain encoder.
    `decoder=False`: a shared folder's stored Whisper decoder is left unread (the encoder's
    memory only; `share.load_shared`)."""
    path = Path(spec)
    try:
        if path.is_dir() and (path / "mimic.json").is_file():
            m = MimicModel.load(path)
            return Loaded("mimic", m, m.head, m.front, path)
        if is_shared_folder(path):
            enc = load_shared(path, decoder=decoder)
            return Loaded("shared", enc, None, enc, path)
        enc = load_encoder(spec)
        if path.is_dir() and (path / "head.json").is_file():
            head, _ = load_head(path)
            return Loaded("pruned", enc, head, enc, path)
        return Loaded("teacher", enc, None, enc, path if path.is_dir() else None)
    except EncoderError as e:
        raise ExportError(f"cannot export {str(spec)!r}: {e}") from None
    except StackslimError as e:  # MimicError, PruneError: bad folders of a known kind
        raise ExportError(f"cannot export {str(spec)!r}: {e}") from None


def _check_out(source: Path | None, out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {str(out)!r} exists and is not a folder")
    check_not_input(out, input_paths(source))  # never write into (or around) the model folder


def _sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def run(model_dir: str | os.PathLike, out: str | os.PathLike, cfg: ExportConfig | None = None) -> ExportResult:
    """Export `model_dir` into the folder `out` as `cfg` says; see the module docstring."""
    cfg = cfg or ExportConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():  # before the (slow) load
        raise ExportError(f"output {str(out)!r} exists and is not a folder")
    need = ("onnx", "onnxruntime") if cfg.format == "onnx" else ("ctranslate2",)
    missing = [m for m in need if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"--format {cfg.format} needs {', '.join(missing)}: "
                          f"pip install 'stackslim[export]'")
    # ONNX holds the encoder only; CTranslate2 converts the whole Whisper model, decoder included
    return export_loaded(load_model(model_dir, decoder=cfg.format == "ct2"), out, cfg, str(model_dir))


def export_loaded(loaded: Loaded, out: str | os.PathLike, cfg: ExportConfig, source: str) -> ExportResult:
    """Export a model already loaded (`load_model`, or built in memory: a pruned variant with
    a head) into the folder `out`, atomically; `source` is what export.json names as its origin."""
    out = Path(out)
    _check_out(loaded.source, out)
    with atomic_dir(out) as tmp:
        if cfg.format == "onnx":
            res = _onnx(loaded, tmp, cfg)
        else:
            res = _ct2(loaded, tmp, cfg)
        res.source, res.out, res.task = source, str(out), loaded.task
        res.files = _sizes(tmp)
        res.config, res.versions = asdict(cfg), provenance()
        write_json(tmp / EXPORT_JSON, res)
    return res


def _onnx(loaded: Loaded, tmp: Path, cfg: ExportConfig) -> ExportResult:
    import torch

    from .graphs import EncoderGraph, MimicGraph
    from .onnx import export_onnx, graph_inputs, initializer_stats, input_names, quantize_int8, run_onnx
    from .parity import bound, compare, parity_clips, reference, shared_copies

    enc = loaded.encoder
    if loaded.kind == "mimic":
        module, ref_model = MimicGraph(loaded.model), loaded.model.as_encoder()
    else:
        module, ref_model = EncoderGraph(loaded.model, loaded.head), loaded.model
    clips = parity_clips(cfg.parity_clips, cfg.seed)
    x, n = graph_inputs(enc, clips)
    names = input_names(enc)
    try:
        info = export_onnx(module, x, n, tmp / "model.onnx", names, loaded.head is not None, cfg.opset)
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as e:
        raise ExportError(f"torch.onnx.export failed on {enc.name} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from e
    ref = reference(ref_model, loaded.head, clips)
    parity = compare(ref, run_onnx(tmp / "model.onnx", x, n))
    parity.update(clips=len(clips), samples=[len(c) for c in clips], tolerance=cfg.tolerance,
                  reference="stackslim PyTorch forward (float32)")
    worst = None if parity["max_abs_diff"] is None else max(parity["max_abs_diff"],
                                                            parity.get("logits_max_abs_diff", 0.0))
    parity["bound"] = bound(parity, cfg.tolerance) if worst is not None else None
    if worst is None or worst > parity["bound"]:
        raise ExportError(f"ONNX output differs from PyTorch by {worst} on valid frames or logits "
                          f"(bound {parity['bound']}: --tolerance {cfg.tolerance:g} × max(1, largest "
                          f"output)); nothing written")
    graph = initializer_stats(tmp / "model.onnx")
    if loaded.kind == "shared":
        copies = shared_copies(loaded.model.shared_parameters(), tmp / "model.onnx")
        graph.update(shared_tensors=len(copies), shared_copies_in_onnx=copies,
                     compact_encoder_bytes=(loaded.source / "model.safetensors").stat().st_size)
    int8 = None
    if cfg.int8:
        int8 = quantize_int8(tmp / "model.onnx", tmp / "model.int8.onnx")
        q = compare(ref, run_onnx(tmp / "model.int8.onnx", x, n))
        int8.update(parity=q, tolerance_rel=cfg.int8_tolerance)
        if q["rel_error"] is None or q["rel_error"] > cfg.int8_tolerance:
            raise ExportError(f"int8 model's relative error {q['rel_error']} exceeds "
                              f"--int8-tolerance {cfg.int8_tolerance:g}; nothing written")
    if enc.family == "whisper":
        inputs = {names[0]: f"(batch, {enc.model.config.num_mel_bins}, mel frames) float32 log-mel "
                            f"features, Hugging Face's extractor per clip, zeros after it "
                            f"({getattr(enc, 'mode', 'unpadded')} mode)",
                  names[1]: "(batch,) int64 valid mel frames (samples // 160)"}
    else:
        inputs = {names[0]: "(batch, samples) float32 16 kHz waveform, zero-padded",
                  names[1]: "(batch,) int64 valid samples"}
    outputs = {"last_hidden_state": "(batch, frames, hidden) float32, after the final norm if any",
               "lengths_out": "(batch,) int64 valid frames"}
    if loaded.task == "asr":
        decoder = loaded.model.info.get("decoder", loaded.model.info.get("teacher", "the teacher"))
        outputs["last_hidden_state"] = (f"(batch, frames, hidden) float32, the last mimic layer's "
                                        f"output (no final norm): the encoder states {decoder}'s "
                                        f"Whisper decoder reads (no logits: the model has no head)")
    if loaded.head is not None:
        outputs["logits"] = "(batch, classes) float32, the task head over valid frames"
    return ExportResult(source="", out="", kind=loaded.kind, family=enc.family, format="onnx",
                        files={}, inputs=inputs, outputs=outputs, exporter=info["exporter"],
                        parity=parity, int8=int8, onnx_graph={**graph, "opset": cfg.opset})


def _ct2(loaded: Loaded, tmp: Path, cfg: ExportConfig) -> ExportResult:
    from ..models.whisper import WhisperEncoderAdapter
    from .ct2 import convert_ct2, ct2_encode, hf_whisper_folder
    from .parity import bound, compare, parity_clips

    enc = loaded.encoder
    if enc.family != "whisper":
        raise ExportError(f"--format ct2 exports Whisper models only; {enc.name} is {enc.family} "
                          f"(use --format onnx)")
    if loaded.kind == "mimic" and loaded.task == "asr":
        raise ExportError(f"--format ct2 cannot hold an ASR mimic: CTranslate2's Whisper encoder is "
                          f"fixed (conv1, conv2, positions, pre-norm GELU attention layers, a final "
                          f"LayerNorm) and a {loaded.model.kind} mimic layer is none of these; use "
                          f"--format onnx (the Whisper decoder reads its last_hidden_state)")
    if loaded.kind == "mimic":
        raise ExportError("--format ct2 cannot export a mimic model (no Whisper decoder reads it); "
                          "use --format onnx")
    dense = loaded.model
    if loaded.kind == "shared":
        if not getattr(dense, "has_decoder", True):
            raise ExportError(f"{loaded.source}: saved without the decoder; CTranslate2 needs it")
        dense = dense.materialize()
    work = Path(tempfile.mkdtemp(prefix=f"{tmp.name}-hf.", dir=tmp.parent))
    try:
        hf = hf_whisper_folder(dense, loaded.source, work / "hf")
        info = convert_ct2(hf, tmp, int8=False)
        if cfg.int8:
            convert_ct2(hf, tmp / "int8", int8=True)
    except Exception as e:  # the converter's own errors are of many types
        raise ExportError(f"CTranslate2 conversion failed ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    clips = parity_clips(cfg.parity_clips, cfg.seed)
    padded = WhisperEncoderAdapter(dense.model, name=dense.name, mode="padded")
    feats, _ = padded.log_mel(clips)  # HF's 30 s features: what CTranslate2 reads
    hs = padded.hidden_states(clips)
    ref = {"last_hidden_state": hs.states[-1].numpy(), "lengths": hs.lengths.numpy()}
    got = ct2_encode(tmp, feats.numpy())
    parity = compare(ref, [got, ref["lengths"]])
    parity.update(clips=len(clips), tolerance=cfg.tolerance, input="Hugging Face 30 s log-mel",
                  reference="Hugging Face encoder in PyTorch (float32)")
    parity["bound"] = bound(parity, cfg.tolerance)
    if parity["max_abs_diff"] > parity["bound"]:
        raise ExportError(f"CTranslate2 encoder differs from PyTorch by {parity['max_abs_diff']:.2e} "
                          f"(bound {parity['bound']:.2e}: --tolerance {cfg.tolerance:g} × max(1, "
                          f"largest output)); nothing written")
    int8 = None
    if cfg.int8:
        q = compare(ref, [ct2_encode(tmp / "int8", feats.numpy()), ref["lengths"]])
        int8 = {"quantization": "int8", "folder": "int8", "parity": q, "tolerance_rel": cfg.int8_tolerance}
    return ExportResult(source="", out="", kind=loaded.kind, family="whisper", format="ct2",
                        files={}, inputs={"features": "(batch, n_mels, 3000) Hugging Face log-mel"},
                        outputs={"encoder": "(batch, 1500, d_model)", "generate": "token ids"},
                        exporter=info["converter"], parity=parity, int8=int8)

