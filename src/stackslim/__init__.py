"""stackslim: find and remove the redundancy in the Transformer stack of speech models."""
__version__ = "0.1.0"
