"""Metrics against independent transcriptions of their published definitions.

Mutual kNN (Huh et al. 2024, "The Platonic Representation Hypothesis", whose code the redundancy
paper follows): each representation's rows are L2-normalised (no centring); a sample's
neighbours are the k other samples with the largest inner product (its own entry is pushed down
before ranking); the score is the mean over samples of |N_X(a) ∩ N_Y(a)| / k. Centring the
columns first is an option (`center=True`, `--knn-center`), named in the results.

WER of an empty reference: jiwer (>= 4.0) counts every hypothesis word as an insertion.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from relhelpers import FAST

from stackslim.cli import main
from stackslim.models.base import HiddenStates
from stackslim.models.transcribe import word_error_rate
from stackslim.similarity import SimilarityEngine, mutual_knn
from stackslim.similarity.blocks import block_influence


def reference_mutual_knn(feats_a: torch.Tensor, feats_b: torch.Tensor, topk: int, center: bool = False) -> float:
    """Transcribed from the published algorithm: normalise, Gram, exclude self, top-k, masks."""
    def nearest(feats: torch.Tensor) -> torch.Tensor:
        if center:
            feats = feats - feats.mean(0, keepdim=True)
        feats = F.normalize(feats, dim=-1)
        gram = feats @ feats.T
        gram.fill_diagonal_(-1e8)
        return gram.argsort(dim=1, descending=True)[:, :topk]  # (n, k)

    knn_a, knn_b = nearest(feats_a), nearest(feats_b)
    n = knn_a.shape[0]
    rows = torch.arange(n)[:, None]
    mask_a, mask_b = torch.zeros(n, n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64)
    mask_a[rows, knn_a] = 1.0
    mask_b[rows, knn_b] = 1.0
    return float(((mask_a * mask_b).sum(dim=1) / topk).mean())


def offset_pair(seed: int, n: int = 40, d1: int = 12, d2: int = 9):
    """Two related representations with a large common offset (as transformer states have):
    here centring changes the neighbours, so the two definitions can be told apart."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d1, generator=g, dtype=torch.float64) + 2.0 * torch.randn(1, d1, generator=g, dtype=torch.float64)
    Y = X @ torch.randn(d1, d2, generator=g, dtype=torch.float64) + torch.randn(n, d2, generator=g, dtype=torch.float64)
    return X, Y + 3.0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("k", [1, 3, 8])
def test_mutual_knn_is_the_reference_definition(seed, k):
    X, Y = offset_pair(seed)
    assert mutual_knn(X, Y, k=k) == pytest.approx(reference_mutual_knn(X, Y, k), abs=1e-12)
    assert mutual_knn(X, Y, k=k, center=True) == pytest.approx(reference_mutual_knn(X, Y, k, center=True), abs=1e-12)


def test_centring_is_a_different_metric():
    diffs = [abs(reference_mutual_knn(*offset_pair(s), 5) - reference_mutual_knn(*offset_pair(s), 5, center=True))
             for s in range(8)]
    assert max(diffs) > 0.02  # so the test above tells the two apart


def _states(seed: int, n: int = 30, S: int = 4, D: int = 10) -> list[torch.Tensor]:
    """S states (n, D) of n one-frame clips, each a noisy function of the previous, with offsets."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, D, generator=g, dtype=torch.float64) + 2.0
    out = [h]
    for _ in range(S - 1):
        h = torch.tanh(h @ torch.randn(D, D, generator=g, dtype=torch.float64) / D**0.5) + 0.3 * h + 1.0
        out.append(h)
    return out


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("estimator", ["dataset", "minibatch"])
def test_streaming_and_all_pairs_paths_equal_the_one_shot_function(estimator, center):
    """The engine (stored samples read back in blocks, or per minibatch: one batch here) gives
    for every pair what mutual_knn gives for that pair alone; the default is not centred."""
    states = _states(0)
    n, k = states[0].shape[0], 4
    hs = HiddenStates(states=[s[:, None, :] for s in states], lengths=torch.ones(n, dtype=torch.long),
                      final_norm=None)  # (n, T=1, D) each
    kw = {} if not center else {"knn_center": True}
    eng = SimilarityEngine(len(states), metrics=("mknn",), view="pooled", estimator=estimator, k=k,
                           batch_size=n, **kw)
    for part in range(0, n, 7):  # streamed in uneven chunks
        eng.update(HiddenStates(states=[s[part:part + 7] for s in hs.states], lengths=hs.lengths[part:part + 7],
                                final_norm=None))
    res = eng.result()
    M = res.matrix("mknn")
    for i in range(len(states)):
        for j in range(len(states)):
            want = 1.0 if i == j else mutual_knn(states[i], states[j], k=k, center=center)
            assert M[i, j] == pytest.approx(want, abs=1e-12), (i, j)
    assert res.to_json()["knn_center"] is center
    if not center:  # Block Influence with kNN (similarity, and prune's knn-bi) uses the same default
        bi = block_influence(hs, metric="mknn", view="pooled", k=k)
        assert bi == pytest.approx([1.0 - mutual_knn(states[i - 1], states[i], k=k) for i in range(1, 4)])


def test_analyze_names_the_knn_definition_in_its_results(tiny_data, tmp_path):
    out = tmp_path / "default"
    assert main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["analyze"]]) == 0
    sim = json.loads((out / "similarity.json").read_text())["similarity"]
    assert sim["knn_center"] is False and "mknn" in sim["matrices"]
    assert json.loads((out / "config.json").read_text())["config"]["knn_center"] is False
    out2 = tmp_path / "centred"
    assert main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out2), *FAST["analyze"],
                 "--knn-center"]) == 0
    sim2 = json.loads((out2 / "similarity.json").read_text())["similarity"]
    assert sim2["knn_center"] is True
    assert np.allclose(sim["matrices"]["cosine"], sim2["matrices"]["cosine"])  # only kNN changes


@pytest.mark.parametrize("refs, hyps, wer", [
    ([""], [""], 0.0),  # silence recognised as silence
    ([""], ["silence"], 1.0),
    ([""], ["peaceful silence"], 2.0),  # every word an insertion (jiwer: 2)
    (["", ""], ["a b", "c"], 3.0),
    (["a", ""], ["a", "b"], 1.0),  # some reference words: the usual (S + D + I) / N
    (["hello world", ""], ["hello duck", ""], 0.5),
])
def test_wer_of_empty_references_as_jiwer(refs, hyps, wer):
    assert word_error_rate(refs, hyps) == wer
