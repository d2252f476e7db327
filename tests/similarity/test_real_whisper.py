"""On the real bundled whisper-base and synth-commands: neighbouring layers are more alike than
distant ones under linear CKA (the premise of the whole study)."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.real


def test_adjacent_layers_more_similar_than_distant(tmp_path):
    from stackslim.similarity import AnalyzeConfig, run

    s = run("whisper-base", "synth-commands", tmp_path,
                AnalyzeConfig(max_clips=160, metrics=("cka",), robustness=False), progress=False)
    C = np.array(s.similarity.matrices["cka"])
    L = C.shape[0] - 1
    adjacent = np.mean([C[i, i + 1] for i in range(1, L)])
    distant = np.mean([C[i, j] for i in range(1, L + 1) for j in range(i + 3, L + 1)])
    print(f"whisper-base, 160 clips: mean CKA of adjacent layers {adjacent:.3f}, "
          f"of layers 3+ apart {distant:.3f}")
    assert adjacent > distant + 0.1
