"""Numerics: constant and near-constant representations, fewer samples than kNN needs, silent
data; defined results or one clear error, never a NaN in a results file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from relhelpers import FAST

from stackslim.cli import main
from stackslim.data import write_wav
from stackslim.results import write_json
from stackslim.similarity import SimilarityEngine
from stackslim.similarity import SimilarityError
from stackslim.similarity.metrics import cosine, linear_cka, mutual_knn


@pytest.mark.parametrize("name", ["cosine", "cka", "cka-unbiased", "mknn"])
@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-6])
def test_near_constant_representation(name, eps):
    """Cosine compares rows one to one: always defined. CKA (and mutual kNN with center=True) centre the columns:
    a representation constant over the samples (up to round-off) is refused in one line; a real
    spread, however small, gives the value of that spread alone (the constant drops out)."""
    fn = {"cosine": cosine, "cka": linear_cka, "cka-unbiased": lambda a, b: linear_cka(a, b, unbiased=True),
          "mknn": lambda a, b, center=False: mutual_knn(a, b, k=3, center=center)}[name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 6))
    c = rng.standard_normal((1, 6))
    noise = rng.standard_normal((20, 6))
    C = np.tile(c, (20, 1)) + eps * noise
    if name == "cosine":
        ref = np.mean((X * C).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(C, axis=1))
        assert float(fn(X, C)) == pytest.approx(ref, rel=1e-9)
    elif eps < 1e-9:
        with pytest.raises(SimilarityError, match="constant over the samples") as e:
            fn(X, C)
        assert "\n" not in str(e.value)
    elif name == "mknn":  # a constant offset moves uncentred neighbours; centred ones see the noise
        assert float(fn(X, C, center=True)) == pytest.approx(float(fn(X, noise, center=True)), rel=1e-6)
    else:
        assert float(fn(X, C)) == pytest.approx(float(fn(X, noise)), rel=1e-6)


def test_engine_refuses_a_near_constant_hidden_state():
    rng = np.random.default_rng(1)
    states = [torch.from_numpy(rng.standard_normal((16, 5, 8))) for _ in range(3)]
    states[1] = torch.ones_like(states[1]) + 1e-13 * torch.from_numpy(rng.standard_normal((16, 5, 8)))
    from stackslim.models.base import HiddenStates

    hs = HiddenStates(states=states, lengths=torch.full((16,), 5), final_norm=True)
    eng = SimilarityEngine(3, metrics=("cosine", "cka"))
    with pytest.raises(SimilarityError, match=r"hidden state 1 is constant over the samples"):
        eng.update(hs)
        eng.result()


@pytest.mark.parametrize("n, k", [(3, 3), (4, 8)])
def test_fewer_samples_than_knn_needs(n, k, tiny_data, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), "--max-clips", str(n),
               "--k", str(k), "--encode-batch", "2"])
    assert rc == 2 and f"k+1={k + 1}" in capsys.readouterr().err
    assert not (out / "similarity.json").exists()
    # without mknn the same clips give finite matrices
    assert main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), "--max-clips", str(n),
                 "--metrics", "cosine,cka", "--encode-batch", "2"]) == 0
    res = json.loads((out / "similarity.json").read_text())
    assert all(np.isfinite(v).all() for v in res["similarity"]["matrices"].values())


def test_all_silent_data_set(tmp_path, capsys):
    """Silence normalises to zeros: every clip gives the same states, so the representations
    are constant over the data set; analyze says so in one line (exit 2) instead of writing NaN."""
    for w in ("a", "b"):
        for i in range(5):
            write_wav(tmp_path / "data" / w / f"{i}.wav", np.zeros(4000, dtype=np.float32))
    out = tmp_path / "o"
    with pytest.warns(UserWarning, match="silent"):
        rc = main(["analyze", "random:wav2vec2", str(tmp_path / "data"), "--out", str(out), "--k", "3"])
    err = [line for line in capsys.readouterr().err.splitlines() if "stackslim analyze: error:" in line]
    assert rc == 2 and len(err) == 1  # one line besides the progress bar
    assert "hidden state [0, 1, 2, 3, 4] is constant over the samples" in err[0]
    assert not (out / "similarity.json").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), np.float32("nan"), torch.tensor([1.0, float("nan")])])
def test_results_files_refuse_non_finite_numbers(bad, tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        write_json(tmp_path / "r.json", {"a": [1.0, {"b": bad}]})
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_float16_model_through_analyze(tiny_data, tmp_path):
    from stackslim.models import load_encoder

    load_encoder("random:wav2vec2").model.half().save_pretrained(tmp_path / "m16")
    out = tmp_path / "o"
    with pytest.warns(UserWarning, match="float16 weights converted to float32"):
        assert main(["analyze", str(tmp_path / "m16"), str(tiny_data), "--out", str(out), *FAST["analyze"]]) == 0
    res = json.loads((out / "similarity.json").read_text())
    assert all(np.isfinite(v).all() for v in res["similarity"]["matrices"].values())
