"""Speech-encoder adapters: one interface (`Encoder`) for every supported family."""
from .base import SAMPLE_RATE, Encoder, EncoderError, HiddenStates, save_encoder
from .io import BUNDLED_NAMES, load_encoder, wrap_model
from .safety import pickle_allowed
from .random_configs import RANDOM_FAMILIES, random_model

__all__ = ["SAMPLE_RATE", "Encoder", "EncoderError", "HiddenStates", "BUNDLED_NAMES",
           "load_encoder", "pickle_allowed", "save_encoder", "wrap_model", "RANDOM_FAMILIES", "random_model"]
