"""Training throughput of the Table 7 networks on the current Keras backend.

For each network and batch size: the first step's time (tracing and
compilation), images/s of the median timed window with the slowest and fastest
windows, achieved GFLOP/s (6 x multiply-adds per image, see
`benchmarks.flops.training_flops`) next to the CPU's estimated peak, and the
process's peak resident memory.

Usage (from the repository root):
    KERAS_BACKEND=jax python -m benchmarks.train_step --models rir32 --json runs/jax.json
    python -m benchmarks.run_all   # every backend in its own process, one table
"""

import keras

from benchmarks import common, flops


def parse_args(argv=None):
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(common.TABLE7))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 500])
    return common.add_common_arguments(parser).parse_args(argv)


def measure(name, batch_size, args):
    """Builds, compiles and times one network at one batch size; returns its record."""
    model = common.compile_for_training(common.build(name, args.num_classes, args.image_size), args)
    step = common.KerasStep(model, *common.synthetic_batch(batch_size, args))
    first_step = common.first_step_seconds(step)
    _, rates = common.time_steps({name: step}, args, batch_size)
    result = {
        "model": name,
        "backend": keras.backend.backend(),
        "batch_size": batch_size,
        "first_step_s": first_step,
        "trainable_parameters": common.trainable_parameters(model),
        "multiply_adds_per_image": flops.multiply_adds(model),
        "training_flops_per_image": flops.training_flops(model),
        **rates[name],
        "achieved_gflops": rates[name]["images_per_s"] * flops.training_flops(model) / 1e9,
        "peak_rss_mib": common.peak_rss_mib(),
    }
    keras.utils.clear_session(free_memory=True)
    return result


def main(argv=None):
    """Runs the benchmark; returns the list of per-run records."""
    args = parse_args(argv)
    common.set_precision(args.mixed_precision)
    peak = common.cpu_peak_gflops()
    results = []
    for name in args.models:
        for batch_size in args.batch_sizes:
            result = measure(name, batch_size, args)
            results.append(result)
            print(
                f"{result['backend']:>10} {name:>18} batch {batch_size:>4}: "
                f"{result['images_per_s']:8.1f} img/s "
                f"[{result['images_per_s_min']:.1f}, {result['images_per_s_max']:.1f}]  "
                f"first step {result['first_step_s']:6.1f} s  "
                f"{result['achieved_gflops']:6.1f} GFLOP/s of ~{peak['gflops']:.0f} peak  "
                f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    common.write_record(args, results)
    return results


if __name__ == "__main__":
    main()
