"""ONNX export with `torch.onnx.export`, int8 with `onnxruntime.quantization`, and running both.

    x, n = graph_inputs(enc, waves)              # what the graph reads (see graphs.py)
    info = export_onnx(EncoderGraph(enc), x, n, "out/model.onnx", has_logits=False)
    quantize_int8("out/model.onnx", "out/model.int8.onnx")
    h, n, *logits = run_onnx("out/model.onnx", x, n)

The TorchScript exporter (``dynamo=False``) is used: the dynamo exporter needs every
data-dependent shape declared, and the masks built from the valid lengths are exactly that.
Parameters that are one Parameter object in PyTorch (a ResidualTransformer group's W_shared)
become one initializer read by every layer. Torch's constant folding is off (it would fold each
layer's transpose of a shared weight into a copy of its own); `fold_weight_transposes` stores
each weight read transposed once, transposed, instead.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..models.base import Encoder, as_waves

EXPORTER = "torch.onnx.export (TorchScript, dynamo=False)"


def graph_inputs(enc: Encoder, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """The exported graph's inputs for 16 kHz clips.

    Whisper: stackslim's log-mel features (B, n_mels, M) and valid mel frames (B,) int64;
    wav2vec2 family: zero-padded waveforms (B, S) float32 and valid samples (B,) int64.
    """
    waves = as_waves(waves)
    if enc.family == "whisper":
        mel, m = enc.log_mel(waves)
        return mel.float(), m.long()
    n = torch.tensor([len(w) for w in waves], dtype=torch.long)
    x = torch.zeros(len(waves), int(n.max()))
    for b, w in enumerate(waves):
        x[b, : len(w)] = torch.from_numpy(np.ascontiguousarray(w))
    return x, n


def input_names(enc: Encoder) -> tuple[str, str]:
    return ("features", "lengths") if enc.family == "whisper" else ("waves", "lengths")


@torch.no_grad()
def export_onnx(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor, path: str | os.PathLike,
                names: tuple[str, str], has_logits: bool, opset: int = 17) -> dict:
    """Trace `module(x, lengths)` into `path` with dynamic batch and time axes."""
    module.eval()
    outputs = ["last_hidden_state", "lengths_out"] + (["logits"] if has_logits else [])
    time_axis = 2 if names[0] == "features" else 1
    axes = {names[0]: {0: "batch", time_axis: "time_in"}, names[1]: {0: "batch"},
            "last_hidden_state": {0: "batch", 1: "frames"}, "lengths_out": {0: "batch"}}
    if has_logits:
        axes["logits"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints taken from shapes
        torch.onnx.export(module, (x, lengths), str(path), input_names=list(names),
                          output_names=outputs, dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=False, dynamo=False)
    folded = fold_weight_transposes(path)
    return {"exporter": EXPORTER, "opset": opset, "inputs": list(names), "outputs": outputs,
            "transposed_weights": folded}


def fold_weight_transposes(path: str | os.PathLike) -> int:
    """Store every weight that the graph only reads transposed (``Transpose(W)`` feeding a
    MatMul, how `F.linear` on 3-D inputs exports) as one transposed initializer, in place.

    One new initializer per *original* initializer, however many nodes read it: a shared
    W_shared stays one tensor (torch's own constant folding would fold each layer's Transpose
    into a copy of its own), and MatMul weights become initializers that
    `onnxruntime.quantization` can quantize. Returns the number of weights transposed.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    made: dict[str, str] = {}
    rename: dict[str, str] = {}
    keep = []
    for node in g.node:
        for k, name in enumerate(node.input):  # read through Identity(initializer) aliases
            node.input[k] = rename.get(name, name)
        if node.op_type == "Identity" and node.input[0] in inits:  # torch's dedup of equal values
            rename[node.output[0]] = node.input[0]
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if node.op_type == "Transpose" and node.input[0] in inits and perm == [1, 0]:
            src = node.input[0]
            if src not in made:
                t = numpy_helper.to_array(inits[src]).T.copy()
                made[src] = f"{src}.T"
                g.initializer.append(numpy_helper.from_array(t, made[src]))
            rename[node.output[0]] = made[src]
        else:
            keep.append(node)
    for node in keep:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
    del g.node[:]
    g.node.extend(keep)
    for out in g.output:
        if out.name in rename:  # an output that is a weight: keep the node that names it
            raise ValueError(f"graph output {out.name} is a weight")
    used = {n for node in g.node for n in node.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    onnx.save(model, str(path))
    return len(made)


def initializer_stats(path: str | os.PathLike) -> dict:
    """Count of initializers, their elements and bytes, and how many hold identical values."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    seen: dict[tuple, int] = {}
    elements = nbytes = 0
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        elements += a.size
        nbytes += a.nbytes
        if a.size >= 64:
            key = (a.shape, a.dtype.str, a.tobytes()[:4096], float(a.astype(np.float64).sum()))
            seen[key] = seen.get(key, 0) + 1
    return {"initializers": len(model.graph.initializer), "elements": int(elements),
            "bytes": int(nbytes), "duplicated": int(sum(c - 1 for c in seen.values()))}


#: node types whose constant inputs `quantize_int8` stores int8: the linear maps (MatMul, Gemm),
#: the convolutions (Conv → ConvInteger: Whisper's conv front end, wav2vec2's CNN and positional
#: conv) and tables read by index (Gather: Whisper's position table, 1500 × 512 in whisper-base).
#: With MatMul/Gemm alone, whisper-base's int8 file kept 7 MB float (its two convs and the
#: position table) and was 3.2× smaller than float; with these, 3.9×.
INT8_OPS = ("MatMul", "Gemm", "Conv", "Gather")


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """Dynamic int8 quantization of every weight of a node in `INT8_OPS` (int8 per output
    channel for MatMul/Gemm/Conv, per tensor for a Gather's table; activations stay float and
    are quantized per tensor at run time by onnxruntime). Biases and norms stay float: a few
    KB. Per-channel weights cut whisper-base's relative error on the last state from 0.16 to
    0.12 (per tensor)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    g = onnx.load(str(src), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    # a Conv whose weight is computed in the graph (wav2vec2's weight-normed positional conv)
    # cannot be quantized by onnxruntime (it raises): it stays float
    computed = [n.name for n in g.node if n.op_type == "Conv" and n.input[1] not in inits]
    logging.disable(logging.WARNING)  # its advice to pre-process (shape inference) first, once per call
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(INT8_OPS), nodes_to_exclude=computed)
    finally:
        logging.disable(logging.NOTSET)
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
            "per_channel": True, "ops": list(INT8_OPS), "float_convs": len(computed),
            "float_bytes": float_initializer_bytes(dst)}


def float_initializer_bytes(path: str | os.PathLike) -> int:
    """Bytes of the float initializers of an ONNX file (what int8 quantization left float)."""
    import onnx

    model = onnx.load(str(path))
    return int(sum(np.prod(i.dims, dtype=np.int64) * 4 for i in model.graph.initializer
                   if i.data_type == onnx.TensorProto.FLOAT))


def session(path: str | os.PathLike, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # onnxruntime's pool threads busy-wait after each run by default; beside other work (the
    # study times PyTorch and onnxruntime variants in turn) they took the CPU from the next
    # model timed: the linear mimic read 42-57 ms in the study's compare step, 8.6 ms alone
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(path_or_session, x: torch.Tensor | np.ndarray, lengths: torch.Tensor | np.ndarray
             ) -> list[np.ndarray]:
    """Run an exported model: [last_hidden_state, lengths, (logits)] as numpy arrays."""
    sess = session(path_or_session) if isinstance(path_or_session, (str, Path)) else path_or_session
    names = [i.name for i in sess.get_inputs()]
    feed = {names[0]: np.asarray(x, dtype=np.float32), names[1]: np.asarray(lengths, dtype=np.int64)}
    return sess.run(None, feed)
