"""XLA:CPU flags (oneDNN, XNNPACK, YNN fusions) on the JAX train step, each against no flags.

`XLA_FLAGS` is read once per process, so every flag set runs in a child process of
its own that compiles the keras_rir train step (`model.train_on_batch`) on the JAX
backend and times `--windows` windows. A round runs every flag set once, in an order
that rotates from round to round, and each flag set's time is divided by the baseline's
of the same round: the ratios of adjacent runs hold while the shared machine's load
drifts. Reported: per flag set, the median speed-up over the baseline (with its 95%
interval over the rounds where there are enough), the first step (compilation), and
the loss of the second step from the same initial weights, which must match the baseline's up
to rounding (a flag that changed the numerics visibly would show there).

Usage (from the repository root):
    python -m benchmarks.xla_cpu_flags --model rir32 --rounds 3 --json runs/xla_flags.json
"""

import json
import os
import statistics
import subprocess
import sys

import keras

from benchmarks import common

FLAG_SETS = {
    "baseline": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": (
        "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"
    ),
    "onednn_fusions": "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce",
    "xnn_fusions": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    "xnn_graph": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "ynn_fusions": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce",
}


def parse_args(argv=None):
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="rir32", choices=common.TABLE7)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flag-sets", nargs="+", default=list(FLAG_SETS), choices=list(FLAG_SETS))
    parser.add_argument(
        "--child", action="store_true", help="internal: time this process's XLA_FLAGS"
    )
    return common.add_common_arguments(parser, steps=2, windows=4, warmup=2).parse_args(argv)


def child(args):
    """Times the train step under this process's XLA_FLAGS; prints one JSON line."""
    common.set_precision(args.mixed_precision)
    keras.utils.set_random_seed(args.seed)  # The same weights in every child.
    model = common.compile_for_training(common.build(args.model, args.num_classes), args)
    step = common.KerasStep(model, *common.synthetic_batch(args.batch_size, args))
    first_s = common.first_step_seconds(step)
    first_loss = step()
    window_s = common.interleaved_windows({"step": step}, args.steps, args.windows, args.warmup)
    print(json.dumps({"first_step_s": first_s, "loss": first_loss, "window_s": window_s["step"]}))


def run_child(flags, args):
    command = [sys.executable, "-m", "benchmarks.xla_cpu_flags", "--child"]
    command += ["--model", args.model, "--batch-size", str(args.batch_size)]
    command += ["--steps", str(args.steps), "--windows", str(args.windows)]
    command += ["--warmup", str(args.warmup)] + (["--mixed-precision"] * args.mixed_precision)
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": flags}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    """Runs the rounds; returns {flag set: median speed-up over the baseline}."""
    args = parse_args(argv)
    if args.child:
        return child(args)
    names = ["baseline"] + [name for name in args.flag_sets if name != "baseline"]
    runs = {name: [] for name in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(run_child(FLAG_SETS[name], args))
            print(f"round {round_index + 1} {name}: {runs[name][-1]}", flush=True)
    results = {}
    for name in names:
        speedups = [
            statistics.median(base["window_s"]) / statistics.median(run["window_s"])
            for base, run in zip(runs["baseline"], runs[name], strict=True)
            if "error" not in run and "error" not in base
        ]
        errors = [run["error"] for run in runs[name] if "error" in run]
        done = [run for run in runs[name] if "error" not in run]
        results[name] = {
            "xla_flags": FLAG_SETS[name],
            "speedup_over_baseline": statistics.median(speedups) if speedups else None,
            "speedup_per_round": speedups,
            "images_per_s": [
                args.batch_size * args.steps / statistics.median(run["window_s"]) for run in done
            ],
            "first_step_s": [run["first_step_s"] for run in done],
            "first_loss": [run["loss"] for run in done],
            "errors": errors,
        }
        speedup = results[name]["speedup_over_baseline"]
        print(
            f"{name:>20}: {'failed: ' + str(errors[0]) if speedup is None else f'{speedup:.3f}x'}"
            f" over baseline (rounds: {', '.join(f'{s:.3f}' for s in speedups)})",
            flush=True,
        )
    common.write_record(args, results)
    return {name: result["speedup_over_baseline"] for name, result in results.items()}


if __name__ == "__main__":
    main()
