"""Layer-by-layer similarity of a Transformer stack: the "Measure" half of Dorszewski et al.
(ICASSP 2025): cosine, linear CKA (biased/unbiased), mutual kNN, over all pairs of hidden
states in one streaming, mergeable, distributed pass; block detection; outlier robustness.

    from stackslim.similarity import AnalyzeConfig, run
    res = run("whisper-base", "synth-commands", "runs/analyze", AnalyzeConfig(max_clips=200))
"""
from .accumulators import ChannelMoments, CosineAccumulator, CovarianceAccumulator
from .blocks import Blocks, block_influence, block_influence_from_matrix, find_blocks
from .config import (ESTIMATORS, METRICS, SUPPORTED, VIEWS, AnalyzeConfig, SimilarityError,
                     check_supported)
from .engine import SimilarityEngine, pairwise_reference
from .metrics import cosine, linear_cka, mutual_knn
from .minibatch import MinibatchAccumulator
from .outliers import ChannelStats, RobustnessReport, blocks_survive, robustness_check, transformed_results
from .pipeline import AnalyzeResult, run, select_clips
from .plots import plot_heatmap
from .result import SimilarityResult
from .store import SampleStore
from .views import samples

__all__ = [
    "AnalyzeConfig", "AnalyzeResult", "run", "select_clips",
    "Blocks", "ChannelMoments", "ChannelStats", "CosineAccumulator", "CovarianceAccumulator", "ESTIMATORS",
    "METRICS", "MinibatchAccumulator", "RobustnessReport", "SUPPORTED", "SampleStore", "SimilarityEngine",
    "SimilarityError", "SimilarityResult", "VIEWS", "block_influence", "block_influence_from_matrix",
    "blocks_survive", "check_supported", "cosine", "find_blocks", "linear_cka", "mutual_knn",
    "pairwise_reference", "plot_heatmap", "robustness_check", "samples", "transformed_results",
]
