"""keras_rir: ResNet in ResNet (Targ, Almeida, Lyman, arXiv:1603.08029) for Keras 3.

`import keras_rir` loads the networks and their parts. The subpackages
`keras_rir.training` (the paper's recipe and `train`) and `keras_rir.tuning`
(the hyperparameter search, needs `keras-tuner`) load when imported:
`from keras_rir import training`.
"""

from keras_rir import (
    analysis,
    blocks,
    conversion,
    data,
    initializers,
    layers,
    models,
    normalization,
    optimizers,
    preprocessing,
    regularizers,
)
from keras_rir.conversion import apply_resnet_init, resnet_init_report

__version__ = "0.1.0"

__all__ = [
    "analysis",
    "apply_resnet_init",
    "blocks",
    "conversion",
    "data",
    "initializers",
    "layers",
    "models",
    "normalization",
    "optimizers",
    "preprocessing",
    "regularizers",
    "resnet_init_report",
]
