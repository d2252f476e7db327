"""`stackslim mimic --bf16`: the mimic layers' training forwards run under bfloat16 autocast;
weights, head, evaluation and the saved model stay float32."""
from __future__ import annotations

import json

import pytest
import torch

from stackslim.cli import main
from stackslim.mimic import MimicModel

from mimichelpers import saved_model_accuracy

FAST = ["--epochs", "2", "--task-epochs", "2", "--head-epochs", "2", "--hidden", "16",
        "--latency-batch", "2", "--latency-repeats", "1", "--quiet", "--kind", "transformer"]


@pytest.mark.parametrize("bf16", [True, False])
def test_bf16_trains_in_bfloat16_and_evaluates_in_float32(bf16, tone_data, tmp_path, monkeypatch):
    seen: list[tuple[bool, torch.dtype]] = []  # (gradients on, dtype of a matmul's output)
    states = MimicModel.mimic_states

    def spy(self, h, lengths):
        linears = [m for m in self.layers.modules() if isinstance(m, torch.nn.Linear)]
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), o.dtype)))
                 for m in linears]
        try:
            return states(self, h, lengths)
        finally:
            for hk in hooks:
                hk.remove()

    monkeypatch.setattr(MimicModel, "mimic_states", spy)
    out = tmp_path / "run"
    assert main(["mimic", "random:wav2vec2", str(tone_data), "--out", str(out), *FAST]
                + (["--bf16"] if bf16 else [])) == 0
    train = {d for g, d in seen if g}
    evaluation = {d for g, d in seen if not g}
    assert train == {torch.bfloat16 if bf16 else torch.float32}  # stage 1 and stage 2 steps
    assert evaluation == {torch.float32}  # validation and test
    res = json.loads((out / "mimic.json").read_text())
    assert res["config"]["bf16"] is bf16
    model = MimicModel.load(out / "model")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert res["mimic"]["accuracy"] == pytest.approx(saved_model_accuracy(out / "model", tone_data))
