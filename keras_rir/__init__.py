"""keras_rir: ResNet in ResNet (Targ, Almeida, Lyman, arXiv:1603.08029) for Keras 3."""

from keras_rir import blocks, initializers, layers, models, regularizers

__version__ = "0.1.0"

__all__ = ["blocks", "initializers", "layers", "models", "regularizers"]
