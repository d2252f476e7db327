"""Layer-by-layer similarity of a Transformer stack: the "Measure" half of Dorszewski et al.
(ICASSP 2025): cosine, linear CKA (biased/unbiased), mutual kNN, over all pairs of hidden
states in one streaming, mergeable, distributed pass; block detection; outlier robustness.
"""
from .accumulators import ChannelMoments, CosineAccumulator, CovarianceAccumulator
from .blocks import Blocks, block_influence, block_influence_from_matrix, find_blocks
from .engine import ESTIMATORS, METRICS, SUPPORTED, SimilarityEngine, check_supported, pairwise_reference
from .errors import SimilarityError
from .metrics import cosine, linear_cka, mutual_knn
from .minibatch import MinibatchAccumulator
from .outliers import ChannelStats, RobustnessReport, blocks_survive, robustness_check, transformed_results
from .result import SimilarityResult
from .store import SampleStore
from .views import VIEWS, samples


def __getattr__(name: str):
    # plot_heatmap is imported on first use: matplotlib costs about a second to import.
    if name == "plot_heatmap":
        from .plots import plot_heatmap

        return plot_heatmap
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Blocks", "ChannelMoments", "ChannelStats", "CosineAccumulator", "CovarianceAccumulator", "ESTIMATORS",
    "METRICS", "MinibatchAccumulator", "RobustnessReport", "SUPPORTED", "SampleStore", "SimilarityEngine",
    "SimilarityError", "SimilarityResult", "VIEWS", "block_influence", "block_influence_from_matrix",
    "blocks_survive", "check_supported", "cosine", "find_blocks", "linear_cka", "mutual_knn",
    "pairwise_reference", "plot_heatmap", "robustness_check", "samples", "transformed_results",
]
