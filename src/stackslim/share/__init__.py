"""ResidualTransformer weight sharing (Wang & Li, ICASSP 2024): every linear map of layer l is
W_shared(group) + A_l B_l + diag(d_l); conversion of pretrained encoders, recovery by
distillation, a compact save format, and materialisation back to a dense model.

    from stackslim.share import ShareConfig, run, to_residual, load_shared
    result = run("whisper-base", "synth-commands", "runs/share", ShareConfig(group=3, rank=16))
    shared = to_residual(enc, groups=3, rank=16, diag=True, share_norms=False)
    shared.hidden_states(waves); shared.save(path); load_shared(path)
    dense = shared.materialize()

Files: config.py (`ShareConfig`, `ShareError`), pipeline.py (`run`, `ShareResult`), command.py
(the CLI); inits.py, convert.py, aware.py, align.py, calibrate.py, grouping.py (conversion);
layer.py, model.py (the model); io.py, load.py (the compact format); recover.py, asr.py
(recovery); size.py (size and latency accounts); scratch.py (training from scratch).
"""
from .calibrate import CalibStats, collect_calibration
from .config import ShareConfig, ShareError
from .convert import INITS, MATRICES, from_config, layer_matrices, register_init, to_residual
from .grouping import block_groups, fixed_groups, measure_blocks, resolve_groups
from .io import SHARE_META, is_shared_folder, save_shared
from .layer import ResidualLinear
from .load import load_shared
from .model import SharedEncoder, ShareSpec
from .pipeline import ShareResult, run
from .size import paper_size_ratio, paper_stack_params

__all__ = ["CalibStats", "INITS", "MATRICES", "ResidualLinear", "SHARE_META", "ShareConfig",
           "ShareError", "ShareResult", "SharedEncoder", "ShareSpec", "block_groups",
           "collect_calibration", "fixed_groups", "from_config", "is_shared_folder",
           "layer_matrices", "load_shared", "measure_blocks", "paper_size_ratio",
           "paper_stack_params", "register_init", "resolve_groups", "run", "save_shared",
           "to_residual"]
