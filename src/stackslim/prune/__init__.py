"""Layer pruning without retraining (Dorszewski et al., ICASSP 2025): deletion orders scored on
validation, accuracy curves, and the pruned model saved as a plain Hugging Face folder.

    from stackslim.prune import PruneConfig, run, load_pruned
    result = run("whisper-base", "synth-commands", "runs/prune", PruneConfig(task="word"))
    enc, head = load_pruned("runs/prune/model")
    result = run("whisper-base", "synth-sentences", "runs/prune-asr", PruneConfig(task="asr"))  # by WER
"""
from ..models.cache import pooled_cache
from .config import ALL_STRATEGIES, DEFAULT_STRATEGIES, OUR_STRATEGIES, PAPER_STRATEGIES, PruneConfig, PruneError
from .curves import Curve, Evaluator
from .pipeline import PruneResult, StrategyResult, run, run_pruning
from .pipeline_asr import AsrPruneResult, run_asr, run_pruning_asr
from .save import classify, load_head, load_pruned, save_head, save_pruned
from .stack import Split, StackRunner, front_end_states, head_logits, kept_layers
from .strategies import STRATEGIES, ScoringContext, deletion_order
from .teacher import Teacher, train_teacher

__all__ = [
    "ALL_STRATEGIES", "DEFAULT_STRATEGIES", "OUR_STRATEGIES", "PAPER_STRATEGIES", "PruneConfig",
    "Curve", "Evaluator", "PruneError", "PruneResult", "StrategyResult", "run", "run_pruning",
    "classify", "load_head", "load_pruned", "save_head", "save_pruned", "Split", "StackRunner",
    "front_end_states", "head_logits", "kept_layers", "pooled_cache", "STRATEGIES", "ScoringContext",
    "deletion_order", "Teacher", "train_teacher", "AsrPruneResult", "run_asr", "run_pruning_asr",
]
