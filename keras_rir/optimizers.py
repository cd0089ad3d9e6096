"""SGD with momentum whose learning rate multiplies the velocity (Torch form).

Keras' `SGD` keeps the learning rate inside its velocity
(`v = m * v - lr * g; w += v`). The two forms agree while the learning rate is
constant, but at a step decay Keras' velocity still holds about `1 / (1 - m)`
steps at the old rate. With the paper's x0.1 decays this made the training loss
of rir32 on CIFAR-10 rise for about 30 steps after each decay (measured in
RESULTS.md); applying the learning rate outside the velocity, as Torch7 and
PyTorch do (the "momentum correction" of Goyal et al., 2017, arXiv:1706.02677),
removes the rise.
"""

import keras
from keras import ops

__all__ = ["MomentumCorrectedSGD"]


@keras.saving.register_keras_serializable(package="keras_rir")
class MomentumCorrectedSGD(keras.optimizers.SGD):
    """SGD with (Nesterov) momentum in the Torch form: `v = m * v + g; w -= lr * v`.

    Same arguments, configuration and variables as `keras.optimizers.SGD`;
    the same trajectory while the learning rate is constant. When the learning
    rate changes, the whole update changes at once, as in Torch7 and PyTorch
    (`torch.optim.SGD` with `dampening=0`).

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: float in `[0, 1)`.
        nesterov: Nesterov momentum: `w -= lr * (g + m * v)`.
        **kwargs: further arguments of `keras.optimizers.SGD`.

    Example:
    >>> optimizer = keras_rir.training.MomentumCorrectedSGD(0.1, momentum=0.9)
    >>> model.compile(optimizer, "sparse_categorical_crossentropy")
    """

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(gradient, learning_rate))
            return
        velocity = self.momentums[self._get_variable_index(variable)]
        momentum = ops.cast(self.momentum, variable.dtype)
        self.assign(velocity, ops.add(ops.multiply(velocity, momentum), gradient))
        step = ops.add(gradient, ops.multiply(velocity, momentum)) if self.nesterov else velocity
        self.assign_sub(variable, ops.multiply(step, learning_rate))
