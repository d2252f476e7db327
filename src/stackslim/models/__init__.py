"""Speech-encoder adapters: one interface (`Encoder`) for every supported family."""
from .base import SAMPLE_RATE, Encoder, EncoderError, HiddenStates
from .io import BUNDLED_NAMES, load_encoder, pickle_allowed, save_encoder, wrap_model
from .random_configs import RANDOM_FAMILIES, random_model

__all__ = ["SAMPLE_RATE", "Encoder", "EncoderError", "HiddenStates", "BUNDLED_NAMES",
           "load_encoder", "pickle_allowed", "save_encoder", "wrap_model", "RANDOM_FAMILIES", "random_model"]
