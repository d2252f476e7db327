"""ResidualTransformer weight sharing (Wang & Li, ICASSP 2024): every linear map of layer l is
W_shared(group) + A_l B_l + diag(d_l); conversion of pretrained encoders, recovery by
distillation, a compact save format, and materialisation back to a dense model.

    from stackslim.share import to_residual, load_shared
    shared = to_residual(enc, groups=3, rank=16, diag=True, share_norms=False)
    shared.hidden_states(waves); shared.save(path); load_shared(path)
    dense = shared.materialize()
"""
from . import aware  # noqa: F401  registers init "aware"
from .calibrate import CalibStats, collect_calibration
from .convert import INITS, MATRICES, from_config, layer_matrices, register_init, to_residual
from .grouping import block_groups, fixed_groups, measure_blocks, resolve_groups
from .io import SHARE_META, is_shared_folder, load_shared, save_shared
from .layer import ResidualLinear
from .model import SharedEncoder, ShareSpec
from .size import paper_stack_params, paper_size_ratio

__all__ = ["CalibStats", "INITS", "collect_calibration", "MATRICES", "ResidualLinear", "SHARE_META", "SharedEncoder", "ShareSpec",
           "block_groups", "fixed_groups", "from_config", "is_shared_folder", "layer_matrices",
           "load_shared", "measure_blocks", "paper_size_ratio", "paper_stack_params",
           "register_init", "resolve_groups", "save_shared", "to_residual"]
