"""The one error type of stackslim.similarity."""
from __future__ import annotations


class SimilarityError(ValueError):
    """Inputs a similarity metric cannot use: bad shapes, too few samples, a constant
    representation, an unsupported metric/estimator/view combination (one-line message)."""
