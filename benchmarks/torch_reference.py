"""The Table 7 networks written directly in PyTorch, timed against keras_rir in one process.

A hand-written `nn.Module` per network (conv without bias + BatchNorm + ReLU
units; a generalized residual unit is a plain convolution whose kernel starts
as the partial identity, the fused form of appendix 6.1), a standard PyTorch
training loop (SGD momentum 0.9, cross-entropy, L2 as `weight_decay` on the
convolution and classifier weights), and the same synthetic batch. The
keras_rir model on the current Keras backend and the PyTorch model in both
memory formats (contiguous NCHW and channels_last) are timed in interleaved
windows, and keras_rir's throughput is reported over the faster PyTorch one.
The trainable parameter counts of the two implementations must be equal.

Usage (from the repository root):
    KERAS_BACKEND=jax python -m benchmarks.torch_reference --models rir32 --json runs/ref.json
"""

import copy

import keras
import numpy as np
import torch
from torch import nn

from benchmarks import common
from keras_rir.initializers import partial_identity

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# name -> (stage widths, blocks per stage, generalized units, outer shortcuts, head).
NETWORKS = {
    "cnn32": ((16, 32, 64), (5, 5, 5), False, False, "dense"),
    "resnet32": ((16, 32, 64), (5, 5, 5), False, True, "dense"),
    "resnet_init32": ((16, 32, 64), (5, 5, 5), True, False, "dense"),
    "rir32": ((16, 32, 64), (5, 5, 5), True, True, "dense"),
    "wide_cnn18": ((96, 192, 384), (2, 3, 3), False, False, "conv"),
    "wide_resnet18": ((96, 192, 384), (2, 3, 3), False, True, "conv"),
    "wide_resnet_init18": ((96, 192, 384), (2, 3, 3), True, False, "conv"),
    "wide_rir18": ((96, 192, 384), (2, 3, 3), True, True, "conv"),
}


def conv_bn(c_in, c_out, stride, generalized, residual_fraction=0.5, batch_norm=True):
    """3x3 conv (no bias) + BN; a generalized unit starts as MSR + partial identity."""
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    if generalized:
        identity = partial_identity((3, 3, c_in, c_out), residual_fraction)  # HWIO
        with torch.no_grad():
            conv.weight.add_(torch.from_numpy(identity.transpose(3, 2, 0, 1).copy()))
    if not batch_norm:
        return nn.Sequential(conv)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1))


class Block(nn.Module):
    """Two conv-BN units; with a shortcut, the sum goes through the last ReLU."""

    def __init__(self, c_in, c_out, stride, generalized, shortcut, batch_norm=True):
        super().__init__()
        self.unit1 = conv_bn(c_in, c_out, stride, generalized, batch_norm=batch_norm)
        self.unit2 = conv_bn(c_out, c_out, 1, generalized, batch_norm=batch_norm)
        self.shortcut = None
        if shortcut and stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut:
            self.shortcut = conv_bn(c_in, c_out, stride, generalized=False, batch_norm=batch_norm)

    def forward(self, x):
        y = self.unit2(torch.relu(self.unit1(x)))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return torch.relu(y)


class Table7Net(nn.Module):
    """Stem unit, three stages of blocks (stride 2 from the second), classifier.

    `batch_norm=False` leaves out every BatchNorm (an ablation of
    `benchmarks.gap_attribution`; not a Table 7 network).
    """

    def __init__(self, name, num_classes=10, batch_norm=True):
        super().__init__()
        widths, blocks, generalized, shortcut, head = NETWORKS[name]
        self.stem = conv_bn(3, widths[0], 1, generalized=False, batch_norm=batch_norm)
        layers, c_in = [], widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for block in range(count):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(Block(c_in, width, stride, generalized, shortcut, batch_norm))
                c_in = width
        self.blocks = nn.Sequential(*layers)
        self.head = head
        dense = head == "dense"
        self.classifier = nn.Linear(c_in, num_classes) if dense else nn.Conv2d(c_in, num_classes, 1)

    def forward(self, x):
        x = self.blocks(torch.relu(self.stem(x)))
        if self.head == "dense":
            return self.classifier(x.mean((2, 3)))
        return self.classifier(x).mean((2, 3))


def make_optimizer(net, learning_rate=0.1, l2=1e-4):
    """SGD momentum 0.9; Keras' L2(l2) penalty l2*sum(w^2) is weight_decay=2*l2."""
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": 2 * l2}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        momentum=0.9,
    )


class TorchStep:
    """One step of the standard PyTorch loop on a fixed batch."""

    def __init__(self, net, images, labels, channels_last, mixed_precision, l2=1e-4, device=DEVICE):
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(device=device, memory_format=memory_format).train()
        self.optimizer = make_optimizer(self.net, l2=l2)
        nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.images = nchw.to(device=device, memory_format=memory_format)
        self.labels = torch.from_numpy(labels.astype("int64")).to(device)
        self.device = device
        self.mixed_precision = mixed_precision

    def __call__(self):
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device, torch.bfloat16, enabled=self.mixed_precision):
            logits = self.net(self.images)
        loss = nn.functional.cross_entropy(logits.float(), self.labels)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def pytorchcv_rir(num_classes=10):
    """pytorchcv's RiR for CIFAR (`rir_cifar10`/`rir_cifar100`: four convolutions per unit).

    The RiR a PyTorch user would take instead of keras_rir's `wide_rir18`
    (`pip install pytorchcv==0.0.74 --no-deps`; 9.49M parameters, randomly initialized here).
    """
    try:
        from pytorchcv.models.rir_cifar import get_rir_cifar
    except ImportError as error:
        raise SystemExit(
            "--reference pytorchcv needs `pip install pytorchcv==0.0.74 --no-deps`"
        ) from error
    return get_rir_cifar(num_classes=num_classes, model_name=f"rir_cifar{num_classes}")


def parameter_count(net):
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def parse_args(argv=None):
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["rir32", "resnet32", "cnn32", "wide_rir18"],
        choices=list(NETWORKS),
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--wide-steps", type=int, default=1, help="steps per window, wide nets")
    parser.add_argument(
        "--memory-formats",
        nargs="+",
        default=["contiguous", "channels_last"],
        choices=["contiguous", "channels_last"],
    )
    parser.add_argument(
        "--reference",
        default="table7",
        choices=["table7", "pytorchcv"],
        help="PyTorch side: our hand-written Table 7 network, or pytorchcv's RiR "
        "(four convolutions per unit; with --models wide_rir18)",
    )
    parser.add_argument(
        "--torch-precision",
        default="same",
        choices=["same", "float32"],
        help="PyTorch in the precision of keras_rir (bfloat16 autocast with "
        "--mixed-precision), or float32 always",
    )
    args = common.add_common_arguments(parser, steps=4, windows=5, warmup=2).parse_args(argv)
    if args.reference == "pytorchcv" and args.models != ["wide_rir18"]:
        parser.error("--reference pytorchcv is an RiR: use it with --models wide_rir18")
    return args


def measure(name, args):
    keras_model = common.build(name, args.num_classes, args.image_size)
    common.compile_for_training(keras_model, args)
    torch.manual_seed(args.seed)
    if args.reference == "pytorchcv":
        reference = pytorchcv_rir(args.num_classes)
    else:
        reference = Table7Net(name, args.num_classes)
    ours, theirs = common.trainable_parameters(keras_model), parameter_count(reference)
    if ours != theirs and args.reference == "table7":
        raise RuntimeError(f"{name}: keras_rir has {ours} trainable parameters, PyTorch {theirs}")
    images, labels = common.synthetic_batch(args.batch_size, args)
    torch_mixed_precision = args.mixed_precision and args.torch_precision == "same"
    steps = {"keras_rir": common.KerasStep(keras_model, images, labels)}
    for memory_format in args.memory_formats:
        channels_last = memory_format == "channels_last"
        steps[f"torch_{memory_format}"] = TorchStep(
            copy.deepcopy(reference), images, labels, channels_last, torch_mixed_precision
        )
    first = {label: common.first_step_seconds(step) for label, step in steps.items()}
    steps_per_window = args.wide_steps if name.startswith("wide") else args.steps
    durations, rates = common.time_steps(steps, args, args.batch_size, steps_per_window)
    best = max(
        (label for label in rates if label.startswith("torch")),
        key=lambda label: rates[label]["images_per_s"],
    )
    result = {
        "model": name,
        "backend": keras.backend.backend(),
        "batch_size": args.batch_size,
        "steps_per_window": steps_per_window,
        "trainable_parameters": ours,
        "reference": args.reference,
        "reference_parameters": theirs,
        "torch_mixed_precision": torch_mixed_precision,
        "first_step_s": first,
        "throughput": rates,
        "best_torch": best,
        # Time ratio torch/keras of adjacent windows = keras_rir speed over PyTorch speed.
        "speedup": common.paired_ratio(durations[best], durations["keras_rir"]),
    }
    keras.utils.clear_session(free_memory=True)
    return result


def main(argv=None):
    """Runs the comparison; returns {model: keras_rir images/s over plain PyTorch images/s}."""
    args = parse_args(argv)
    common.set_precision(args.mixed_precision)
    results = []
    for name in args.models:
        result = measure(name, args)
        results.append(result)
        rates = " ".join(
            f"{label} {rate['images_per_s']:.1f}" for label, rate in result["throughput"].items()
        )
        speedup = result["speedup"]
        print(
            f"{result['backend']:>10} {name:>18} batch {args.batch_size}: {rates} img/s; "
            f"keras_rir/{result['best_torch']} = {speedup['ratio']:.2f} "
            f"({speedup['ratio_ci_coverage']:.0%} interval "
            f"{speedup['ratio_ci_low']:.2f}-{speedup['ratio_ci_high']:.2f})",
            flush=True,
        )
    common.write_record(args, results, torch_version=torch.__version__)
    return {result["model"]: result["speedup"]["ratio"] for result in results}


if __name__ == "__main__":
    main()
