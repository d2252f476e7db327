"""Numerics: constant and near-constant representations, fewer samples than kNN needs, silent
data; defined results or one clear error, never a NaN in a results file."""
from __future__ import annotations

import json
import math

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


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-6])
@pytest.mark.parametrize("fn", [cosine, linear_cka, lambda a, b: linear_cka(a, b, unbiased=True),
                                lambda a, b: mutual_knn(a, b, k=3)])
def test_near_constant_representation(fn, eps):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 6))
    C = np.tile(rng.standard_normal((1, 6)), (20, 1)) + eps * rng.standard_normal((20, 6))
    try:
        v = float(fn(X, C))
    except SimilarityError as e:
        assert "\n" not in str(e)
        return
    assert math.isfinite(v) and -1.0 - 1e-9 <= v <= 1.0 + 1e-9


def test_engine_never_returns_nan_for_near_constant_states():
    rng = np.random.default_rng(1)
    states = [torch.from_numpy(rng.standard_normal((16, 5, 8))) for _ in range(3)]
    states[1] = torch.ones_like(states[1]) + 1e-13 * torch.from_numpy(rng.standard_normal((16, 5, 8)))
    from stackslim.models.base import HiddenStates

    hs = HiddenStates(states=states, lengths=torch.full((16,), 5), final_norm=True)
    eng = SimilarityEngine(3, metrics=("cosine", "cka"))
    try:
        eng.update(hs)
        res = eng.result()
    except SimilarityError:
        return
    for m in res.matrices.values():
        assert np.isfinite(np.asarray(m)).all()


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
    are constant over the data set; analyze says so in one line instead of writing NaN."""
    for w in ("a", "b"):
        for i in range(5):
            write_wav(tmp_path / "data" / w / f"{i}.wav", np.zeros(4000, dtype=np.float32))
    out = tmp_path / "o"
    with pytest.warns(UserWarning, match="silent"):
        rc = main(["analyze", "random:wav2vec2", str(tmp_path / "data"), "--out", str(out), "--k", "3"])
    if rc == 0:
        res = json.loads((out / "similarity.json").read_text())
        assert all(np.isfinite(v).all() for v in res["similarity"]["matrices"].values())
    else:
        err = capsys.readouterr().err
        assert rc == 2 and "constant" in err
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
