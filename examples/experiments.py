"""The paper's experiments as data: Tables 1-6, resumable runs, `tables.md` and `depth.png`.

The shared module of `reproduce_tables.py`, `depth_study.py` and
`stream_ablation.py` (not part of the installed package; the scripts import it
as `experiments`, their folder being first on `sys.path`).

Every table row holds the paper's accuracy and, where this library can build
the network, a `RunSpec` naming the model to train. `run_experiments` trains
each distinct run once with `keras_rir.training.train` (one run after
another; finished runs are skipped, a killed run resumes from its backup),
writes the markdown tables and a JSON of every run after each run, and says plainly
when the budget is smaller than the paper's.

Reference: arXiv:1603.08029, Tables 1-6 and Figure 4.
"""

import dataclasses
import json
import os
import time

from keras_rir import cli, reporting, training
from keras_rir._validation import check_positive_int, invalid_value


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run: a registered model, its builder arguments and a dataset.

    Attributes:
        model_name: a name from `keras_rir.models.list_models()`.
        dataset: `"cifar10"` or `"cifar100"`.
        model_kwargs: builder arguments as a tuple of `(name, value)` pairs.
    """

    model_name: str
    dataset: str = "cifar10"
    model_kwargs: tuple = ()

    @property
    def run_id(self):
        """Directory name of the run, e.g. `"cifar10-rir-num_blocks=9-layers_per_block=3"`."""
        return "-".join(
            [self.dataset, self.model_name, *(f"{key}={value}" for key, value in self.model_kwargs)]
        )


@dataclasses.dataclass(frozen=True)
class Row:
    """A row of a paper table: its label, the paper's accuracy (%) and our run (or None)."""

    label: str
    paper_accuracy: float | None
    run: RunSpec | None = None


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of the paper: key (`"table3"`), title, rows and an optional note."""

    key: str
    title: str
    rows: tuple
    note: str = ""


def _spec(model_name, dataset="cifar10", **model_kwargs):
    return RunSpec(model_name, dataset, tuple(model_kwargs.items()))


def main_tables():
    """Tables 1-4 of the paper, with the paper's accuracies.

    Rows for networks this library does not build (Highway networks,
    110-layer ResNet, ...) carry no run and are listed for reference.

    Returns:
        A dict `{"table1": Table, ..., "table4": Table}`.

    Example:
    >>> experiments.main_tables()["table3"].rows[-1].paper_accuracy
    92.97

    Reference: arXiv:1603.08029, Tables 1-4.
    """

    def wide(dataset, accuracies):
        labels = {"cnn": "CNN", "resnet": "ResNet", "resnet_init": "ResNet Init", "rir": "RiR"}
        return [
            Row(f"18-layer + wide {label}", accuracy, _spec(f"wide_{name}18", dataset))
            for (name, label), accuracy in zip(labels.items(), accuracies, strict=True)
        ]

    table1 = [
        Row("Highway Network", 92.40),
        Row("ResNet (32 layers)", 92.49),
        Row("ResNet (110 layers)", 93.57),
        Row("Large ALL-CNN", 95.59),
        Row("Fractional Max-Pooling", 96.53),
    ] + wide("cifar10", (93.64, 93.95, 94.28, 94.99))
    table2 = [Row("Highway Network", 67.76), Row("ELU-Network", 75.72)] + wide(
        "cifar100", (75.17, 76.58, 75.99, 77.10)
    )
    table3 = [
        Row("ResNet (He et al., 2015b)", 92.49),
        Row("CNN", 89.03, _spec("cnn32")),
        Row("ResNet", 92.32, _spec("resnet32")),
        Row("ResNet Init", 89.62, _spec("resnet_init32")),
        Row("RiR", 92.97, _spec("rir32")),
    ]
    table4 = [
        Row("Standard initialization", 93.22, _spec("all_cnn_c")),
        Row("ResNet Init", 93.42, _spec("all_cnn_c", resnet_init=True)),
    ]
    return {
        "table1": Table("table1", "Table 1: CIFAR-10, 18-layer wide networks", tuple(table1)),
        "table2": Table("table2", "Table 2: CIFAR-100, 18-layer wide networks", tuple(table2)),
        "table3": Table("table3", "Table 3: CIFAR-10, 32-layer networks", tuple(table3)),
        "table4": Table(
            "table4",
            "Table 4: CIFAR-10, ALL-CNN-C with batch normalization",
            tuple(table4),
            note="The original ALL-CNN-C without batch normalization had 90.92%.",
        ),
    }


# (blocks, layers per block) of Table 5 and the paper's RiR accuracies.
PAPER_DEPTH_CONFIGS = {(15, 2): 92.87, (3, 10): 90.06, (6, 5): 92.98, (15, 5): 92.11, (9, 3): 93.23}
# Layers per block of Table 6 (15 blocks): (ResNet, RiR) accuracies of the paper.
PAPER_LAYERS_PER_BLOCK = {
    2: (92.32, 92.97),
    4: (92.48, 93.43),
    6: (92.61, 93.42),
    8: (88.47, 92.38),
    10: (10.00, 92.01),
}


def depth_tables(configs=None, layers_per_block=None, num_blocks=15):
    """Tables 5 and 6 (Figure 4): RiR and ResNet with more blocks and layers per block.

    Args:
        configs: `(blocks, layers per block)` pairs of Table 5; default the
            paper's five. A pair the paper did not run has no paper accuracy.
        layers_per_block: layers per block of Table 6; default 2, 4, 6, 8, 10.
        num_blocks: blocks of every Table 6 network (15 in the paper; the
            paper's accuracies are shown only for 15).

    Returns:
        A dict `{"table5": Table, "table6": Table}`; Table 6 lists a ResNet
        and a RiR row per depth.

    Example:
    >>> tables = experiments.depth_tables(configs=[(9, 3)], layers_per_block=[2, 4])

    Reference: arXiv:1603.08029, Tables 5-6 and Figure 4.
    """
    configs = list(PAPER_DEPTH_CONFIGS) if configs is None else [tuple(c) for c in configs]
    layers_per_block = list(
        PAPER_LAYERS_PER_BLOCK if layers_per_block is None else layers_per_block
    )
    num_blocks = check_positive_int("num_blocks", num_blocks)
    table5 = tuple(
        Row(
            f"RiR, {blocks} blocks x {layers} layers",
            PAPER_DEPTH_CONFIGS.get((blocks, layers)),
            _spec("rir", num_blocks=blocks, layers_per_block=layers),
        )
        for blocks, layers in configs
    )
    paper = PAPER_LAYERS_PER_BLOCK if num_blocks == 15 else {}
    table6 = [
        Row(
            f"{label}, {layers} layers/block",
            accuracy,
            _spec(name, num_blocks=num_blocks, layers_per_block=layers),
        )
        for layers in layers_per_block
        for name, label, accuracy in zip(
            ("resnet", "rir"), ("ResNet", "RiR"), paper.get(layers, (None, None)), strict=True
        )
    ]
    return {
        "table5": Table("table5", "Table 5: CIFAR-10, RiR blocks x layers per block", table5),
        "table6": Table(
            "table6",
            f"Table 6: CIFAR-10, ResNet and RiR with {num_blocks} blocks (Figure 4)",
            tuple(table6),
        ),
    }


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much training each run gets: its recipe, the images it uses and its seed.

    Attributes:
        recipe: the `keras_rir.training.Recipe` of every run (default: the paper's).
        max_train_examples: train on the first N examples (None: all of them).
        max_test_examples: evaluate on the first N test examples (None: all
            of them).
        seed: seed of every run.
    """

    recipe: training.Recipe = training.PAPER_RECIPE
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    seed: int = 0

    @classmethod
    def from_record(cls, record):
        """The `Budget` of a JSON record of `dataclasses.asdict(budget)`, e.g. of `run.json`.

        Also reads the flat records of earlier versions (`epochs`, `batch_size` and
        `learning_rate` beside the other fields, the rest of the recipe the paper's).
        """
        record = dict(record)
        if "recipe" in record:
            record["recipe"] = training.Recipe(**record["recipe"])
        else:
            flat = {key: record.pop(key) for key in ("epochs", "batch_size", "learning_rate")}
            record["recipe"] = training.PAPER_RECIPE.replace(**flat)
        return cls(**record)

    def reductions(self):
        """Plain sentences, one per way this budget departs from the paper's; empty if none."""
        recipe, paper = self.recipe, training.PAPER_RECIPE
        notes = []
        if recipe.epochs < paper.epochs:
            notes.append(f"{recipe.epochs} epochs instead of the paper's {paper.epochs}")
        for images, count, total in (
            ("training", self.max_train_examples, 50_000),
            ("test", self.max_test_examples, 10_000),
        ):
            if count is not None and count < total:
                notes.append(f"the first {count:,} {images} images instead of {total:,}")
        # The other fields but the learning rate (not in the paper), decays scaled to the run.
        paper = paper.scaled_to(recipe.epochs)
        for field in dataclasses.fields(recipe):
            ours, theirs = getattr(recipe, field.name), getattr(paper, field.name)
            if field.name not in ("epochs", "learning_rate") and ours != theirs:
                name = field.name.replace("_", " ")
                notes.append(f"{name} {ours} instead of the paper's {theirs}")
        return notes


PAPER_BUDGET = Budget()


def add_budget_arguments(parser, output_dir="runs/experiments"):
    """Adds the data, budget and output flags the experiment scripts share to `parser`.

    Flags: `--cifar10-dir`, `--cifar100-dir`, the recipe flags of
    `keras_rir.cli.add_recipe_arguments` (`--budget`, `--epochs`, `--batch-size`,
    `--learning-rate`, `--optimizer`, ...; default: the paper's recipe),
    `--max-train-examples`, `--max-test-examples`, `--seed`, `--output-dir`, `--verbose`.

    Args:
        parser: an `argparse.ArgumentParser`.
        output_dir: default of `--output-dir`.

    Returns:
        `parser`.

    Example:
    >>> parser = experiments.add_budget_arguments(argparse.ArgumentParser())
    """
    for dataset in ("cifar10", "cifar100"):
        parser.add_argument(
            f"--{dataset}-dir",
            help=f"local {dataset} in the binary layout (else the default of "
            "keras_rir.data.load_cifar)",
        )
    cli.add_recipe_arguments(parser)
    parser.add_argument("--max-train-examples", type=int, help="train on the first N images only")
    parser.add_argument("--max-test-examples", type=int, help="test on the first N images only")
    parser.add_argument("--seed", type=int, default=PAPER_BUDGET.seed)
    parser.add_argument(
        "--output-dir", default=output_dir, help="experiment directory; reruns resume from it"
    )
    parser.add_argument("--verbose", type=int, default=2, help="verbose of model.fit (0, 1, 2)")
    return parser


def budget_from_args(args):
    """The `Budget` and the `data_dirs` dict of flags added by `add_budget_arguments`.

    Args:
        args: the parsed `argparse.Namespace`.

    Returns:
        `(budget, data_dirs)`.

    Example:
    >>> budget, data_dirs = experiments.budget_from_args(args)
    """
    budget = Budget(
        cli.recipe_from_args(args), args.max_train_examples, args.max_test_examples, args.seed
    )
    dirs = {dataset: getattr(args, f"{dataset}_dir") for dataset in ("cifar10", "cifar100")}
    data_dirs = {dataset: path for dataset, path in dirs.items() if path}
    return budget, data_dirs


def budget_statement(budget):
    """One plain sentence on the budget: the paper's recipe, or how it is reduced."""
    reductions = budget.reductions()
    if reductions:
        return (
            "**Reduced budget**: "
            + "; ".join(reductions)
            + ". These accuracies are not comparable with the paper's."
        )
    paper = training.PAPER_RECIPE
    return (
        f"Budget: the paper's recipe ({paper.epochs} epochs, "
        f"batch {paper.batch_size}, all training images)."
    )


def _load_data(dataset, data_dirs, budget, cache):
    from keras_rir import data as data_lib

    if dataset not in cache:
        data = data_lib.load_cifar(
            dataset,
            data_dir=(data_dirs or {}).get(dataset),
            max_train_examples=budget.max_train_examples,
        )
        test = slice(budget.max_test_examples)  # None: all of them.
        cache[dataset] = dataclasses.replace(
            data, x_test=data.x_test[test], y_test=data.y_test[test]
        )
    return cache[dataset]


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def _summary(spec, record, results, status):
    environment = results.get("environment", {})
    return {
        "run_id": spec.run_id,
        "model": spec.model_name,
        "model_kwargs": dict(spec.model_kwargs),
        "dataset": spec.dataset,
        "status": status,
        "budget": record["budget"],
        "test_accuracy": results.get("test_accuracy"),
        "epochs": results.get("epochs"),
        "num_train_examples": results.get("num_train_examples"),
        "num_test_examples": results.get("num_test_examples"),
        "num_parameters": results.get("num_parameters"),
        "wall_time_seconds": results.get("wall_time_seconds"),
        "backend": environment.get("backend"),
        "device": environment.get("device"),
        "hyperparameters": results.get("hyperparameters"),
        "results": os.path.join("runs", spec.run_id, "results.json"),
    }


def run_experiments(
    tables,
    output_dir,
    data_dirs=None,
    budget=PAPER_BUDGET,
    markdown_name="tables.md",
    model_names=None,
    train_fn=None,
    verbose=0,
):
    """Trains every run of `tables` once, one after another, resumably.

    Each distinct `RunSpec` trains in `output_dir/runs/<run_id>/` with
    `keras_rir.training.train` (which writes `results.json`, `model.keras`,
    `log.csv` and a backup to resume from). `run.json` there records the
    budget and whether the run finished: a finished run is skipped, a killed
    one is started again and resumes after its last finished epoch. After
    each run, `output_dir/<markdown_name>` and a JSON of the same name
    (`tables.md` and `tables.json`: every run with its hyperparameters,
    epochs, wall time, backend, device and accuracy) are rewritten.

    Args:
        tables: a dict or list of `Table`s.
        output_dir: directory of the experiment.
        data_dirs: dict mapping `"cifar10"` / `"cifar100"` to a local copy
            for `keras_rir.data.load_cifar`; missing datasets come from its
            default (`KERAS_RIR_DATA_DIR`, else the Keras cache).
        budget: a `Budget`.
        markdown_name: file name of the markdown tables, or None to write
            neither the markdown nor the JSON.
        model_names: None to run every row; else train only the runs of
            these model names (other runs still appear, with their results,
            if they finished in `output_dir` before).
        train_fn: the training function (default `keras_rir.training.train`).
        verbose: `verbose` of `model.fit`.

    Returns:
        A dict mapping run ids to summaries (dicts with `"status"`:
        `"trained"` or `"skipped"` (finished before), `"test_accuracy"`, `"epochs"`,
        `"wall_time_seconds"`, `"backend"`, `"device"`, ...).

    Raises:
        ValueError: `output_dir` holds a finished run of the same network
            with a different budget (use another `output_dir`).

    Example:
    >>> summaries = experiments.run_experiments(
    ...     [experiments.main_tables()["table3"]], "runs/table3",
    ...     data_dirs={"cifar10": "data/cifar10"},
    ...     budget=experiments.Budget(
    ...         keras_rir.training.PAPER_RECIPE.replace(epochs=10), max_train_examples=5000))
    """
    train_fn = train_fn or training.train
    tables = list(tables.values()) if isinstance(tables, dict) else list(tables)
    specs = list(dict.fromkeys(row.run for table in tables for row in table.rows if row.run))
    budget_dict = dataclasses.asdict(budget)
    os.makedirs(os.path.join(output_dir, "runs"), exist_ok=True)
    summaries, cache = {}, {}
    for spec in specs:
        run_dir = os.path.join(output_dir, "runs", spec.run_id)
        record_path = os.path.join(run_dir, "run.json")
        record = _read_json(record_path)
        if record is not None and Budget.from_record(record["budget"]) != budget:
            raise invalid_value(
                "output_dir",
                output_dir,
                f"a directory without runs of another budget: run {spec.run_id} there has "
                f"budget {record['budget']}, this call {budget_dict}; use another output_dir",
            )
        if record is not None and record["status"] == "finished":
            results = _read_json(os.path.join(run_dir, "results.json")) or {}
            summaries[spec.run_id] = _summary(spec, record, results, "skipped")
            print(f"[experiments] {spec.run_id}: finished before, skipped", flush=True)
            continue
        if model_names is not None and spec.model_name not in model_names:
            continue
        os.makedirs(run_dir, exist_ok=True)
        record = {"run_id": spec.run_id, "status": "running", "budget": budget_dict}
        record["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reporting.write_results(record, record_path)
        print(f"[experiments] {spec.run_id}: training", flush=True)
        results = train_fn(
            spec.model_name,
            _load_data(spec.dataset, data_dirs, budget, cache),
            run_dir,
            budget.recipe,
            seed=budget.seed,
            model_kwargs=dict(spec.model_kwargs),
            verbose=verbose,
        )
        record["status"] = "finished"
        reporting.write_results(record, record_path)
        summaries[spec.run_id] = _summary(spec, record, results, "trained")
        print(
            f"[experiments] {spec.run_id}: test accuracy {results['test_accuracy']:.4f}",
            flush=True,
        )
        _write_outputs(tables, summaries, budget, output_dir, markdown_name)
    _write_outputs(tables, summaries, budget, output_dir, markdown_name)
    return summaries


def run_from_args(args, tables, markdown_name, model_names=None):
    """`run_experiments` with the flags of `add_budget_arguments`; prints the tables.

    Args:
        args: the parsed `argparse.Namespace`.
        tables: a list of `Table`s.
        markdown_name: file name of the markdown tables in `args.output_dir`.
        model_names: None to run every row, else only the runs of these models.

    Returns:
        The summaries returned by `run_experiments`.

    Example:
    >>> summaries = experiments.run_from_args(args, [tables["table3"]], "tables.md")
    """
    budget, data_dirs = budget_from_args(args)
    print(budget_statement(budget), flush=True)
    summaries = run_experiments(
        tables,
        args.output_dir,
        data_dirs=data_dirs,
        budget=budget,
        markdown_name=markdown_name,
        model_names=model_names,
        verbose=args.verbose,
    )
    print(markdown_tables(tables, summaries, budget), flush=True)
    stem = os.path.join(args.output_dir, os.path.splitext(markdown_name)[0])
    print(f"Wrote {stem}.md and {stem}.json", flush=True)
    return summaries


def _write_outputs(tables, summaries, budget, output_dir, markdown_name):
    if markdown_name is None:
        return
    reporting.write_results(
        {
            "budget": dataclasses.asdict(budget),
            "reduced_budget": budget.reductions(),
            "runs": list(summaries.values()),
        },
        os.path.join(output_dir, os.path.splitext(markdown_name)[0] + ".json"),
    )
    with open(os.path.join(output_dir, markdown_name), "w") as file:
        file.write(markdown_tables(tables, summaries, budget))


def _cell(value, spec=".2f"):
    return "—" if value is None else f"{value:{spec}}"


def markdown_tables(tables, summaries, budget=PAPER_BUDGET):
    """Our accuracy beside the paper's for every row, as markdown.

    Args:
        tables: a dict or list of `Table`s.
        summaries: the dict returned by `run_experiments` (run id -> summary).
        budget: the `Budget` of the runs; a reduced budget is stated first.

    Returns:
        A markdown string: a budget statement, then one table per `Table`
        with columns model, paper (%), ours (%), difference, epochs,
        training images, wall time, device and run id.

    Example:
    >>> print(experiments.markdown_tables(experiments.main_tables(), {}))
    """
    tables = list(tables.values()) if isinstance(tables, dict) else list(tables)
    lines = [budget_statement(budget), ""]
    for table in tables:
        lines += [
            f"## {table.title}",
            "",
            "| Model | Paper (%) | Ours (%) | Ours - paper | Epochs | Train images | "
            "Wall time (s) | Device | Run |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for row in table.rows:
            if row.run is None:
                cells = [row.label, _cell(row.paper_accuracy), "not built here"] + [""] * 6
                lines.append("| " + " | ".join(cells) + " |")
                continue
            summary = summaries.get(row.run.run_id) or {}
            accuracy = summary.get("test_accuracy")
            accuracy = None if accuracy is None else 100.0 * accuracy
            known = accuracy is not None and row.paper_accuracy is not None
            cells = [
                row.label,
                _cell(row.paper_accuracy),
                _cell(accuracy),
                _cell(accuracy - row.paper_accuracy if known else None, "+.2f"),
                str(summary.get("epochs") or "—"),
                str(summary.get("num_train_examples") or "—"),
                _cell(summary.get("wall_time_seconds"), ".0f"),
                f"{summary.get('backend') or '—'} / {summary.get('device') or '—'}",
                f"`{row.run.run_id}`",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if table.note:
            lines += ["", table.note]
        lines.append("")
    return "\n".join(lines)


def plot_depth(table, summaries, path):
    """Figure 4: accuracy against layers per block, one line per architecture.

    Our accuracies are solid lines with markers, the paper's dashed lines of
    the same colour. Imports matplotlib when called.

    Args:
        table: Table 6 from `depth_tables`.
        summaries: run id -> summary, as returned by `run_experiments`.
        path: PNG file to write.

    Returns:
        `path`.

    Example:
    >>> experiments.plot_depth(depth_tables()["table6"], summaries, "depth.png")
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    for index, (name, label) in enumerate((("resnet", "ResNet"), ("rir", "RiR"))):
        ours, paper = [], []
        for row in table.rows:
            if row.run is None or row.run.model_name != name:
                continue
            layers = dict(row.run.model_kwargs)["layers_per_block"]
            accuracy = summaries.get(row.run.run_id, {}).get("test_accuracy")
            if accuracy is not None:
                ours.append((layers, 100.0 * accuracy))
            if row.paper_accuracy is not None:
                paper.append((layers, row.paper_accuracy))
        for points, source, style in ((ours, "ours", "o-"), (paper, "paper", "x--")):
            if points:
                xs, ys = zip(*points, strict=True)
                axes.plot(xs, ys, style, color=f"C{index}", label=f"{label} ({source})")
    axes.set(xlabel="layers per block", ylabel="test accuracy (%)", title=table.title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
