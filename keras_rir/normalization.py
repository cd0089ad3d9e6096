"""Batch normalization on each backend's fused kernel: the only backend dispatch in keras_rir.

`keras.layers.BatchNormalization` computes the training-mode statistics and
the normalization from separate elementwise ops on every backend, which made
batch normalization the largest share of keras_rir's gap to plain PyTorch on
CPU. `BatchNormalization` here is the same layer (same variables, names,
shapes, config, inference path and moving-statistics formula) whose
training-mode forward pass runs:

- TensorFlow: the `FusedBatchNormV3` op (channels-last 4D inputs; float32,
  or bfloat16/float16 inputs with float32 scale and offset);
- torch: `torch.nn.functional.batch_norm` (any rank >= 2, any channel axis,
  more than one value per channel);
- JAX (and any other backend): one-pass float32 moments, `E[x^2] - E[x]^2`
  (clipped at 0), which XLA:CPU reads in one pass where Keras' `jnp.var`
  takes two. Measured on a shared, loaded 2-core AMD EPYC (jax 0.10.2):
  forward and backward of BN + ReLU at batch 128, medians of 7 windows,
  11.4 / 3.5 / 1.5 ms against Keras' 18.4 / 5.6 / 3.1 ms at 32x32x16 /
  16x16x32 / 8x8x64 (a second run: 17.1 / 3.3 / 1.0 against 18.2 / 3.9 /
  1.2), while a custom VJP with the closed-form backward was slower (14.5 /
  7.5 / 3.9 ms). On the whole rir32 training step the difference is not
  resolved: 0.92x and 0.99x Keras' time in two runs (intervals 0.72-1.13
  and 0.91-1.38, `python -m benchmarks.overhead --pairs fused_bn/keras_bn`).
  One pass loses precision when a channel's mean is large against its spread
  (relative error about float32's epsilon times `(mean / std)^2`); Keras'
  torch backend computes its variance the same way.

Anything else (a mask, renorm, `synchronized`, float64, other layouts on
TensorFlow) runs Keras' own code. The moving statistics are updated as Keras
does, `moving = moving * momentum + batch * (1 - momentum)` with the *biased*
batch variance; the fused kernels' own running-variance updates use the
unbiased one, so they are not used.
"""

import math

import keras
from keras import ops

__all__ = ["BatchNormalization"]

_FUSED_DTYPES = ("float16", "bfloat16", "float32")


@keras.saving.register_keras_serializable(package="keras_rir")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step runs the backend's fused kernel.

    A drop-in replacement: it takes the same arguments, creates the same
    variables (`gamma`, `beta`, `moving_mean`, `moving_variance`, float32
    under `mixed_bfloat16`) and keeps the class name, so weight files written
    with Keras' layer (whose paths are `layers/batch_normalization_<i>`) load
    into models built with this one. Inference mode and the cases the fused
    kernels cannot take run Keras' code; see the module docstring.

    Args:
        **kwargs: the arguments of `keras.layers.BatchNormalization`.

    Returns:
        A Keras layer; called in training mode it returns the normalized
        inputs in the compute dtype and updates the moving statistics.

    Example:
    >>> bn = keras_rir.normalization.BatchNormalization(momentum=0.9, epsilon=1e-5)
    >>> y = bn(np.ones((2, 4, 4, 8), "float32"), training=True)
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[self.axis]
        gamma = ops.convert_to_tensor(self.gamma) if self.scale else ops.ones((channels,))
        beta = ops.convert_to_tensor(self.beta) if self.center else ops.zeros((channels,))
        backend = keras.backend.backend()
        if backend == "tensorflow":
            outputs, mean, variance = _tensorflow_fused(inputs, gamma, beta, self.epsilon)
        elif backend == "torch":
            outputs, mean, variance = _torch_fused(inputs, gamma, beta, self.axis, self.epsilon)
        else:
            outputs, mean, variance = _one_pass(inputs, gamma, beta, self.axis, self.epsilon)
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(ops.cast(moving, "float32") * self.momentum + batch * (1 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask):
        """Whether the training-mode pass can skip Keras' code for `inputs`."""
        if mask is not None or self.renorm or self.synchronized:
            return False
        if keras.backend.standardize_dtype(inputs.dtype) not in _FUSED_DTYPES:
            return False
        rank = len(inputs.shape)
        backend = keras.backend.backend()
        if backend == "tensorflow":
            return rank == 4 and self.axis in (-1, 3)
        if backend == "torch":  # F.batch_norm refuses one value per channel
            return rank >= 2 and math.prod(inputs.shape) > inputs.shape[self.axis]
        return rank >= 2


def _biased(variance, inputs, channels):
    """The biased variance from the unbiased one over `size(inputs) / channels` values."""
    count = ops.cast(ops.size(inputs), "float32") / channels
    return variance * ((count - 1.0) / count)


def _tensorflow_fused(inputs, gamma, beta, epsilon):
    """`FusedBatchNormV3` on NHWC inputs; returns `(outputs, mean, biased variance)`."""
    import tensorflow as tf

    empty = tf.constant([], "float32")
    outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=inputs,
        scale=gamma,
        offset=beta,
        mean=empty,
        variance=empty,
        epsilon=epsilon,
        exponential_avg_factor=1.0,
        data_format="NHWC",
        is_training=True,
    )
    return outputs, mean, _biased(variance, inputs, inputs.shape[-1])


def _torch_fused(inputs, gamma, beta, axis, epsilon):
    """`torch.nn.functional.batch_norm`; returns `(outputs, mean, biased variance)`.

    With `momentum=1.0` the kernel writes the batch mean and the unbiased batch
    variance into the two fresh running-statistics buffers.
    """
    import torch

    channels = inputs.shape[axis]
    mean = torch.zeros(channels, dtype=torch.float32, device=inputs.device)
    variance = torch.zeros(channels, dtype=torch.float32, device=inputs.device)
    outputs = torch.nn.functional.batch_norm(
        torch.movedim(inputs, axis, 1),
        mean,
        variance,
        weight=gamma,
        bias=beta,
        training=True,
        momentum=1.0,
        eps=epsilon,
    )
    return torch.movedim(outputs, 1, axis), mean, _biased(variance, inputs, channels)


def _one_pass(inputs, gamma, beta, axis, epsilon):
    """Float32 moments in one pass and Keras' normalization; `(outputs, mean, variance)`."""
    inputs = ops.cast(inputs, "float32")
    axes = [i for i in range(len(inputs.shape)) if i != axis % len(inputs.shape)]
    mean = ops.mean(inputs, axis=axes)
    variance = ops.relu(ops.mean(ops.square(inputs), axis=axes) - ops.square(mean))
    outputs = ops.batch_normalization(
        inputs, mean, variance, axis=axis, offset=beta, scale=gamma, epsilon=epsilon
    )
    return outputs, mean, variance
