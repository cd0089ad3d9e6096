"""Shared harness of the benchmark scripts: synthetic batches, compiled models, timed windows.

Every benchmark times the real Keras training step, `model.train_on_batch`
(forward, loss with the L2 / PartialIdentityDecay penalties, backward, SGD
with momentum; it returns the loss as a host number, so each step is
synchronized), on one synthetic batch kept on the device. Timing is done in
windows of `steps` steps after `warmup` steps; the median window gives the
throughput and the other windows its spread. Several models are timed in
interleaved windows (A, B, B, A, ...) so that the load of a shared machine
hits them alike and their ratio holds while absolute times drift.
"""

import argparse
import copy
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import keras
import numpy as np

import keras_rir
from keras_rir import reporting, training

# Every network of Table 7, in the paper's order.
TABLE7 = (
    "cnn32",
    "resnet32",
    "resnet_init32",
    "rir32",
    "wide_cnn18",
    "wide_resnet18",
    "wide_resnet_init18",
    "wide_rir18",
)


def add_common_arguments(parser, steps=5, windows=5, warmup=2):
    """Adds the flags every benchmark script shares."""
    parser.add_argument("--steps", type=int, default=steps, help="training steps per window")
    parser.add_argument("--windows", type=int, default=windows, help="timed windows")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed steps after the first")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument(
        "--image-size", type=int, default=32, help="height and width (CIFAR: 32; tests: 8)"
    )
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jit-compile",
        default="auto",
        choices=["auto", "true", "false"],
        help="Keras compile(jit_compile=...); 'auto' is Keras' default (XLA on JAX, "
        "not on TensorFlow without an accelerator, not on torch)",
    )
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="bf16 compute via keras.config.set_dtype_policy('mixed_bfloat16') "
        "(faster on GPUs and on CPUs with AVX512_BF16 or AMX)",
    )
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    return parser


def set_precision(mixed_precision):
    keras.config.set_dtype_policy("mixed_bfloat16" if mixed_precision else "float32")


def synthetic_batch(batch_size, args):
    """Uniform [0, 1) float32 images and integer labels (NumPy) of `args`' size, classes, seed."""
    rng = np.random.default_rng(args.seed)
    images = rng.random((batch_size, args.image_size, args.image_size, 3), dtype=np.float32)
    labels = rng.integers(0, args.num_classes, size=(batch_size,)).astype("int32")
    return images, labels


def compile_for_training(model, args, loss="sparse_categorical_crossentropy"):
    """Compiles `model` as the recipe trains it (SGD, cross-entropy) with `args`' rate and jit."""
    model.compile(
        optimizer=training.make_optimizer("sgd", args.learning_rate),
        loss=loss,
        jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile],
    )
    return model


def rebuild(model, rewrite_layer, copy_weights=False):
    """A new model from a deep copy of `model`'s graph config, `rewrite_layer(entry)` on each layer.

    A `keras_rir.models.ResidualNetwork`'s own config holds its architecture arguments, so the
    graph is read from a plain `keras.Model` over the same inputs and outputs. `copy_weights`
    gives the new model `model`'s weights.
    """
    plain = keras.Model(model.inputs, model.outputs, name=model.name)
    config = copy.deepcopy(plain.get_config())
    for entry in config["layers"]:
        rewrite_layer(entry)
    clone = keras.Model.from_config(config)
    if copy_weights:
        clone.set_weights(model.get_weights())
    return clone


def trainable_parameters(model):
    """Trainable parameters (kernels, biases, BN scales and offsets; no BN statistics)."""
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


class KerasStep:
    """One `train_on_batch` call on a fixed batch already converted to backend tensors."""

    def __init__(self, model, images, labels):
        self.model = model
        self.images = keras.ops.convert_to_tensor(images)
        self.labels = keras.ops.convert_to_tensor(labels)

    def __call__(self):
        return float(self.model.train_on_batch(self.images, self.labels))


def first_step_seconds(step):
    """Times the first call (tracing and compilation included)."""
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def interleaved_windows(steps_by_name, steps, windows, warmup):
    """Times each callable in turn, window by window, in ABBA order (A, B, B, A, A, B, ...).

    Reversing the order every other round cancels any advantage of running
    first or second after a switch (caches, thread pools, the load of the
    other processes drifting within a round).

    Args:
        steps_by_name: dict of name -> callable running one training step.
        steps: calls per window.
        windows: windows per callable.
        warmup: untimed calls of each callable before the first window.

    Returns:
        dict of name -> list of window durations in seconds.
    """
    for step in steps_by_name.values():
        for _ in range(warmup):
            step()
    durations = {name: [] for name in steps_by_name}
    names = list(steps_by_name)
    for window in range(windows):
        for name in names if window % 2 == 0 else names[::-1]:
            step = steps_by_name[name]
            start = time.perf_counter()
            for _ in range(steps):
                step()
            durations[name].append(time.perf_counter() - start)
    return durations


def time_steps(steps_by_name, args, batch_size, steps=None):
    """`(durations, throughputs)` by name of `interleaved_windows` of `steps` or `args.steps`."""
    steps = args.steps if steps is None else steps
    durations = interleaved_windows(steps_by_name, steps, args.windows, args.warmup)
    rates = {name: throughput(window_s, steps, batch_size) for name, window_s in durations.items()}
    return durations, rates


def throughput(durations, steps, batch_size):
    """Images/s of the median window, with the slowest and fastest windows as the spread."""
    rates = sorted(steps * batch_size / duration for duration in durations)
    return {
        "images_per_s": statistics.median(rates),
        "images_per_s_min": rates[0],
        "images_per_s_max": rates[-1],
        "window_s": list(durations),
    }


def median_interval(values, confidence=0.95):
    """Distribution-free confidence interval of the median: a pair of order statistics.

    The interval `[x_(k), x_(n+1-k)]` (sorted values, 1-based) covers the true
    median with probability `1 - 2 P(Binomial(n, 1/2) < k)`; `k` is the largest
    whose coverage is at least `confidence`. With too few values for that
    (fewer than 6 at 95%) it is the full range, with its smaller coverage.

    Args:
        values: the measurements (window ratios), any order.
        confidence: the coverage wanted.

    Returns:
        A tuple `(low, high, coverage)`.
    """
    ordered = sorted(values)
    n = len(ordered)
    k, coverage = 1, 1 - 2 * 0.5**n
    for candidate in range(2, n // 2 + 1):
        below = sum(math.comb(n, i) for i in range(candidate)) * 0.5**n
        if 1 - 2 * below < confidence:
            break
        k, coverage = candidate, 1 - 2 * below
    return ordered[k - 1], ordered[n - k], coverage


def paired_ratio(durations_a, durations_b):
    """Median, 95% interval of the median and range of the window-by-window time ratios A/B."""
    ratios = sorted(a / b for a, b in zip(durations_a, durations_b, strict=True))
    low, high, coverage = median_interval(ratios)
    return {
        "ratio": statistics.median(ratios),
        "ratio_ci_low": low,
        "ratio_ci_high": high,
        "ratio_ci_coverage": coverage,
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
        "ratio_of_medians": statistics.median(durations_a) / statistics.median(durations_b),
    }


def peak_rss_mib():
    """Peak resident memory of this process so far (getrusage ru_maxrss), in MiB.

    It is the high-water mark of the whole process on the host (framework,
    compiled programs, all models built so far), not device memory.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _lscpu():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    lines = (line.partition(":") for line in text.splitlines())
    return {key.strip(): value.strip() for key, _, value in lines}


def cpu_peak_gflops():
    """Estimated float32 peak of the CPU in GFLOP/s: cores x GHz x FLOPs per cycle.

    FLOPs per cycle per core: 64 with AVX-512 (two FMA units x 16 float32
    lanes x 2), 32 with AVX2 + FMA, 8 otherwise. The clock is lscpu's
    `CPU max MHz` when reported, else BogoMIPS / 2 (the TSC, i.e. nominal
    clock, on x86 under a hypervisor). Turbo, AVX-512 down-clocking and
    whether a virtual core is a whole physical core are not known here.

    Returns:
        dict with `gflops`, `cores`, `ghz`, `flops_per_cycle` and `model`.
    """
    fields = _lscpu()
    flags = fields.get("Flags", "").split()
    cores = os.cpu_count() or 1
    if "CPU max MHz" in fields:
        ghz = float(fields["CPU max MHz"]) / 1000
    elif "BogoMIPS" in fields:
        ghz = float(fields["BogoMIPS"]) / 2000
    else:
        ghz = float("nan")
    per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags and "fma" in flags else 8
    return {
        "gflops": cores * ghz * per_cycle,
        "cores": cores,
        "ghz": ghz,
        "flops_per_cycle": per_cycle,
        "model": fields.get("Model name", platform.processor()),
    }


def write_record(args, results, **extra):
    """Writes the results with the hyperparameters, environment and the CPU's estimated peak.

    Nothing is written without `args.json` (`--json`).
    """
    if not args.json:
        return
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    data = {
        "arguments": vars(args),
        "environment": reporting.environment(),
        "cpu_peak": cpu_peak_gflops(),
        "flops_convention": (
            "training FLOPs per image = 6 x forward multiply-adds of convolutions and dense "
            "layers (2 FLOPs per MAC, backward = 2 x forward); BN, ReLU, adds excluded"
        ),
        "timing": (
            "model.train_on_batch on one synthetic batch kept on the device; images/s of "
            "the median timed window, min/max windows as spread; first step timed apart"
        ),
        **extra,
        "results": results,
    }
    reporting.write_results(data, args.json)


def build(name, num_classes=10, image_size=32, **kwargs):
    """A registered keras_rir model for `image_size` x `image_size` RGB images."""
    return keras_rir.models.get(
        name, num_classes=num_classes, input_shape=(image_size, image_size, 3), **kwargs
    )


def parser(description):
    return argparse.ArgumentParser(description=description)
