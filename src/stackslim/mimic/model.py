"""The mimic model: the teacher's front end + 1 or 2 mimicking layers + the task head.

    model = MimicModel.from_teacher(enc, head, kind="linear", num_layers=1, hidden=512)
    logits = model(waves)                  # (B, C) from a list of 16 kHz clips
    model.predict(waves)                   # class names
    model.save("out/model"); MimicModel.load("out/model")

Front end: a copy of the teacher's encoder adapter with every layer removed (for Whisper the
encoder alone, no decoder), frozen. The mimic layers read its output *before* positional
encoding (Whisper: after conv2's GELU; wav2vec2 family: after the feature projection), as in
the paper. With ``positions=True`` the family's own positional encoding is added first
(Whisper's table of positions; wav2vec2's positional convolution and, for post-LN layouts,
its LayerNorm) and saved with the model.

Saved format (a folder): ``mimic.json`` (the config, the front end's Hugging Face config, the
class names) and ``model.safetensors`` with keys ``front_end.*`` (only the front-end tensors
the model uses), ``layers.<i>.*`` and ``head.*``. Loading asserts every key and shape.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..heads import ClassifierHead
from ..models.base import Encoder, HiddenStates, as_waves, read_meta
from ..models.compact import assign_tensors, fill_meta
from ..models.io import register_folder_reader, wrap_model
from ..evaluate.latency import count_params
from ..results import atomic_dir
from .config import MimicError
from .data import check_encoder
from .layers import make_layer

FORMAT = 1
CONFIG_FILE = "mimic.json"
WEIGHTS_FILE = "model.safetensors"


def front_end_copy(enc: Encoder) -> Encoder:
    """A frozen copy of `enc` with its whole stack removed (Whisper: the encoder, no decoder)."""
    check_encoder(enc)
    if enc.family == "whisper":
        from ..models.whisper import WhisperEncoderAdapter

        mod = enc.encoder_module
        stack = mod.layers
        mod.layers = nn.ModuleList()  # do not copy the stack only to throw it away
        try:
            new = copy.deepcopy(mod)
        finally:
            mod.layers = stack
        new.config = copy.deepcopy(new.config)
        new.config.encoder_layers = 0
        front: Encoder = WhisperEncoderAdapter(new, name=enc.name, mode=enc.mode)
    else:
        front = enc.without_layers(range(enc.num_layers))
    front.model.eval()
    for p in front.parameters():
        p.requires_grad_(False)
    return front


def used_prefixes(front: Encoder, positions: bool) -> tuple[str, ...]:
    """State-dict prefixes (relative to `front.model`) of the front-end modules the model runs."""
    if front.family == "whisper":
        return ("conv1.", "conv2.") + (("embed_positions.",) if positions else ())
    keep = ("feature_extractor.", "feature_projection.")
    if positions:
        keep += ("encoder.pos_conv_embed.",)
        if not front.stable_layer_norm:
            keep += ("encoder.layer_norm.",)
    return keep


def _front_end_from_config(meta: dict) -> Encoder:
    """Rebuild the zero-layer front end from its saved Hugging Face config (weights follow)."""
    from transformers import AutoConfig, AutoModel

    from ..models.whisper import WhisperEncoderAdapter

    hf = dict(meta["hf_config"])
    cfg = AutoConfig.for_model(hf.pop("model_type"), **hf)
    if cfg.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoderAdapter(WhisperEncoder(cfg), name=meta["name"], mode=meta["mode"])
    return wrap_model(AutoModel.from_config(cfg), name=meta["name"],
                      do_normalize=meta["do_normalize"])


class MimicModel(nn.Module):
    """Front end (frozen) → mimic layers → classifier head (none for transcription: the
    teacher's Whisper decoder reads the last mimic layer's output).

    Args:
        front: the zero-layer front end (`front_end_copy`).
        layers: 1 or 2 mimicking layers, (B, T, d) → (B, T, d) each.
        head: the task head, reading the last mimic layer's output; None for a mimic whose
            states a Whisper decoder reads (`--task asr`).
        kind, hidden, heads: how the layers were built (kept for saving).
        positions: add the family's positional encoding before the layers.
        class_names: names of the head's classes (for `predict`).
        info: free-form provenance saved with the model (teacher name, boundary, ...).
    """

    def __init__(self, front: Encoder, layers: nn.ModuleList, head: ClassifierHead | None, kind: str,
                 hidden: int, heads: int = 0, positions: bool = False,
                 class_names: Sequence[str] | None = None, info: dict | None = None):
        super().__init__()
        if not 1 <= len(layers) <= 2:
            raise MimicError(f"a mimic model has 1 or 2 layers, got {len(layers)}")
        self.front, self.layers, self.head = front, layers, head
        self.kind, self.hidden, self.heads, self.positions = kind, hidden, heads, positions
        self.class_names = list(class_names) if class_names is not None else None
        self.info = dict(info or {})

    @classmethod
    def from_teacher(cls, enc: Encoder, head: ClassifierHead | None, kind: str = "linear",
                     num_layers: int = 1, hidden: int = 512, heads: int = 0,
                     positions: bool = False, class_names: Sequence[str] | None = None,
                     info: dict | None = None, seed: int = 0) -> "MimicModel":
        """Front end copied from `enc`, new mimic layers (seeded init), a copy of `head` (or none)."""
        d = enc.hidden_size
        if head is not None and head.hidden_size != d:
            raise MimicError(f"head reads size {head.hidden_size}, the encoder gives {d}")
        if kind == "transformer" and not heads:
            cfg = enc.model.config
            heads = int(getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "encoder_attention_heads", 0))
        torch.manual_seed(seed)
        try:
            layers = nn.ModuleList(make_layer(kind, d, hidden, heads) for _ in range(num_layers))
        except ValueError as e:
            raise MimicError(str(e)) from e
        return cls(front_end_copy(enc), layers, copy.deepcopy(head), kind, hidden,
                   heads if kind == "transformer" else 0, positions, class_names,
                   dict(info or {}, teacher=enc.name, teacher_layers=enc.num_layers))

    # -- running -----------------------------------------------------------------------
    def train(self, mode: bool = True) -> "MimicModel":
        super().train(mode)
        self.front.eval()  # frozen: no dropout in the front end, ever
        return self

    @property
    def hidden_size(self) -> int:
        return self.front.hidden_size

    def features(self, waves: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Front end before positions: (B, T, d) and lengths (B,)."""
        return self.front.features(as_waves(waves))

    def mimic_states(self, h: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every mimic layer (each (B, T, d)) from features h (B, T, d)."""
        x = self.front.add_positions(h, lengths) if self.positions else h
        outs = []
        for layer in self.layers:
            x = layer(x, lengths)
            outs.append(x)
        return outs

    @torch.inference_mode()
    def hidden_states(self, waves: Sequence[np.ndarray | torch.Tensor]) -> HiddenStates:
        """Features and every mimic layer's output, as an encoder's `HiddenStates` (the last one
        stands in for the teacher's last state, e.g. for a Whisper decoder to read)."""
        self.eval()
        h, n = self.features(waves)
        return HiddenStates(states=[h, *self.mimic_states(h, n)], lengths=n, final_norm=None)

    def logits_from_features(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, C) logits from cached features h (B, T, d)."""
        if self.head is None:
            raise MimicError("this mimic model has no classifier head (it was trained for --task asr)")
        return self.head(self.mimic_states(h, lengths)[-1], lengths)

    def forward(self, waves: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        """(B, C) logits for a batch of 16 kHz mono clips (a list of 1-D arrays)."""
        h, n = self.features(waves)
        return self.logits_from_features(h, n)

    @torch.inference_mode()
    def predict(self, waves: Sequence[np.ndarray | torch.Tensor]) -> list:
        """The predicted class of every clip: its name, or its id when names are unknown."""
        self.eval()
        ids = self(waves).argmax(-1).tolist()
        return [self.class_names[i] for i in ids] if self.class_names else ids

    # -- size ----------------------------------------------------------------------------
    def front_end_state(self) -> dict[str, torch.Tensor]:
        """The front-end tensors the model runs (keys relative to the HF module)."""
        keep = used_prefixes(self.front, self.positions)
        return {k: v for k, v in self.front.model.state_dict().items() if k.startswith(keep)}

    def num_params(self, part: str = "all") -> int:
        """Unique parameters of "all", "front_end" (only what runs), "stack" (mimic layers), "head"."""
        keep = used_prefixes(self.front, self.positions)
        front = [p for k, p in self.front.model.named_parameters() if k.startswith(keep)]
        head = [self.head] if self.head is not None else []
        parts = {"front_end": [front], "stack": [self.layers], "head": head}
        if part == "all":
            return count_params(front, self.layers, *head)
        if part not in parts:
            raise ValueError(f"part must be all, front_end, stack or head, got {part!r}")
        return count_params(*parts[part])

    # -- saving --------------------------------------------------------------------------
    def config(self) -> dict:
        front = self.front
        hf = front.model.config.to_dict()
        for k in ("architectures", "transformers_version", "_name_or_path"):
            hf.pop(k, None)
        return {
            "format": FORMAT, "kind": self.kind, "num_layers": len(self.layers),
            "hidden": self.hidden, "heads": self.heads, "positions": self.positions,
            "hidden_size": self.hidden_size,
            "head": self.head.config() if self.head is not None else None,
            "class_names": self.class_names, "info": self.info,
            "front_end": {"family": front.family, "name": front.name,
                          "mode": getattr(front, "mode", None),
                          "do_normalize": getattr(front, "do_normalize", True),
                          "hf_config": hf},
        }

    def _saved_tensors(self) -> dict[str, torch.Tensor]:
        """The saved keys and the model's own tensors under them (no copy; meta works too)."""
        sd = {f"front_end.{k}": v for k, v in self.front_end_state().items()}
        sd.update({f"layers.{k}": v for k, v in self.layers.state_dict().items()})
        if self.head is not None:
            sd.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return sd

    def state_for_saving(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu().clone() for k, v in self._saved_tensors().items()}

    def as_encoder(self) -> "MimicEncoder":
        """This model behind the `Encoder` interface (what `load_encoder` returns for a mimic folder)."""
        return MimicEncoder(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the folder `path` (replaced atomically): mimic.json + model.safetensors."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.exists() and not path.is_dir():
            raise MimicError(f"output {str(path)!r} exists and is not a folder")
        with atomic_dir(path) as tmp:
            save_file(self.state_for_saving(), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            (tmp / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MimicModel":
        """Read a folder written by `save`; every tensor's key and shape is checked.

        The modules are built on the meta device and the stored tensors put in place without a
        copy, so loading allocates the weights once; front-end tensors the model never runs
        (not saved) are zeros."""
        from safetensors.torch import load_file


        path = Path(path)
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise MimicError(f"{path}: not a mimic model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        meta = read_meta(path / CONFIG_FILE)
        if meta.get("format") != FORMAT:
            raise MimicError(f"{path}: mimic format {meta.get('format')!r}, this stackslim reads {FORMAT}")
        h = meta["head"]
        with torch.device("meta"):
            front = _front_end_from_config(meta["front_end"])
            layers = nn.ModuleList(make_layer(meta["kind"], meta["hidden_size"], meta["hidden"], meta["heads"])
                                   for _ in range(meta["num_layers"]))
            head = ClassifierHead(h["hidden_size"], h["num_classes"], h["proj_size"]) if h else None
        model = cls(front, layers, head, meta["kind"], meta["hidden"], meta["heads"],
                    meta["positions"], meta["class_names"], meta["info"])
        saved = load_file(str(path / WEIGHTS_FILE))
        expected = model._saved_tensors()
        missing = sorted(set(expected) - set(saved))
        extra = sorted(set(saved) - set(expected))
        if missing or extra:
            raise MimicError(f"{path}: weights do not match the config (missing {missing[:3]}, "
                             f"unexpected {extra[:3]})")
        for k, v in saved.items():
            if v.shape != expected[k].shape:
                raise MimicError(f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
        strip = lambda prefix: {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}  # noqa: E731
        assign_tensors(front.model, strip("front_end."), requires_grad=False)
        assign_tensors(model.layers, strip("layers."))
        if head is not None:
            assign_tensors(model.head, strip("head."))
        fill_meta(model)
        for p in front.parameters():
            p.requires_grad_(False)
        model.eval()
        return model


class MimicEncoder(Encoder):
    """A `MimicModel` behind the `Encoder` interface, so `stackslim info` and every function
    that takes an encoder read a mimic folder.

    Hidden state 0 is the front end's output before positions (B, T, d), as the mimic layers
    read it; states 1..L are the mimic layers' outputs (B, T, d). No final norm. The head is
    `self.mimic.head`.
    """

    def __init__(self, mimic: MimicModel):
        super().__init__(mimic.front.model, name=mimic.front.name)
        self.mimic = mimic
        self.family = mimic.front.family

    @property
    def layers(self) -> nn.ModuleList:
        return self.mimic.layers

    @property
    def final_norm_module(self) -> nn.Module | None:
        return None

    def front_end(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mimic.features(waves)

    def stack_context(self, x0: torch.Tensor, lengths: torch.Tensor) -> dict:
        return {"lengths": lengths}

    def run_layer(self, i: int, x: torch.Tensor, ctx: dict) -> torch.Tensor:
        if i == 0 and self.mimic.positions:
            x = self.mimic.front.add_positions(x, ctx["lengths"])
        return self.mimic.layers[i](x, ctx["lengths"])

    def _set_num_layers(self, n: int) -> None:
        pass  # the mimic model's layer count is len(layers)

    def _replace_layers(self, layers: nn.ModuleList, dropped: list[int]) -> None:
        self.mimic.layers = layers

    def num_params(self, stack_only: bool = False) -> int:
        """Unique parameters the model runs, head excluded (stack_only: the mimic layers)."""
        if stack_only:
            return self.mimic.num_params("stack")
        return self.mimic.num_params("front_end") + self.mimic.num_params("stack")

    def save(self, path: str | Path) -> None:
        self.mimic.save(path)


register_folder_reader("mimic.json", lambda path: MimicModel.load(path).as_encoder())
