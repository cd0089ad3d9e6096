"""Tables 5-6 and Figure 4: RiR and ResNet with more blocks and more layers per block.

Trains RiR with (blocks, layers per block) in (15, 2), (3, 10), (6, 5), (15, 5), (9, 3)
(Table 5) and ResNet against RiR with 15 blocks of 2, 4, 6, 8 and 10 layers (Table 6)
with the paper's recipe, one run after another, and writes `depth.md` (ours beside the
paper's), `depth.json` (every run) and `depth.png` (accuracy against layers per block,
one line per architecture, the paper's dashed) into `--output-dir`. Reruns skip
finished runs and resume a killed one.

Usage (from the repository root, with `PYTHONPATH=.` or after `pip install -e .`):

    KERAS_BACKEND=jax python examples/depth_study.py --cifar10-dir /path/to/cifar10

    # Reduced budget and a smaller grid (stated in depth.md):
    KERAS_BACKEND=jax python examples/depth_study.py --cifar10-dir /path/to/cifar10 \\
        --table 6 --layers-per-block 2 4 --epochs 10 --max-train-examples 10000

`main()` returns `{run id: test accuracy}`.
"""

import argparse
import os

import experiments


def config(text):
    """Parses "BLOCKSxLAYERS", e.g. "9x3"."""
    try:
        blocks, layers = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected BLOCKSxLAYERS such as 9x3, got {text!r}"
        ) from error
    return blocks, layers


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--table", nargs="+", choices=("5", "6"), default=["5", "6"])
    parser.add_argument(
        "--configs",
        nargs="+",
        type=config,
        default=list(experiments.PAPER_DEPTH_CONFIGS),
        help="Table 5 (blocks x layers per block) pairs, e.g. 15x2 9x3",
    )
    parser.add_argument(
        "--layers-per-block",
        nargs="+",
        type=int,
        default=list(experiments.PAPER_LAYERS_PER_BLOCK),
        help="Table 6 layers per block",
    )
    parser.add_argument("--num-blocks", type=int, default=15, help="Table 6 blocks")
    experiments.add_budget_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tables = experiments.depth_tables(args.configs, args.layers_per_block, args.num_blocks)
    tables = [tables[f"table{key}"] for key in sorted(set(args.table))]
    summaries = experiments.run_from_args(args, tables, "depth.md")
    for table in tables:
        if table.key == "table6":
            path = experiments.plot_depth(
                table, summaries, os.path.join(args.output_dir, "depth.png")
            )
            print(f"Wrote {path}", flush=True)
    return {run_id: summary["test_accuracy"] for run_id, summary in summaries.items()}


if __name__ == "__main__":
    main()
