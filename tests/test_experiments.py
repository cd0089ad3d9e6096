"""Tests of examples/experiments.py and the scripts of examples/ that use it."""

import inspect
import json
import os

import pytest

from keras_rir import models, training
from tests import plots
from tests.cifar_archives import write_cifar10
from tests.example_scripts import load_script

experiments = load_script("experiments")

TINY = ["--epochs", "1", "--batch-size", "10", "--max-test-examples", "10", "--verbose", "0"]


def budget(epochs, batch_size=500, **kwargs):
    """A `Budget` of the paper's recipe for `epochs` (its decays scaled) and `batch_size`."""
    recipe = training.PAPER_RECIPE.replace(epochs=epochs, batch_size=batch_size)
    return experiments.Budget(recipe, **kwargs)


def all_specs(tables):
    return [row.run for table in tables.values() for row in table.rows if row.run]


def test_paper_numbers():
    tables = experiments.main_tables()
    assert [row.paper_accuracy for row in tables["table3"].rows] == [
        92.49,
        89.03,
        92.32,
        89.62,
        92.97,
    ]
    assert [row.run.model_name for row in tables["table3"].rows[1:]] == [
        "cnn32",
        "resnet32",
        "resnet_init32",
        "rir32",
    ]
    assert tables["table3"].rows[0].run is None
    table1 = {row.label: (row.paper_accuracy, row.run) for row in tables["table1"].rows}
    assert table1["18-layer + wide RiR"] == (94.99, experiments.RunSpec("wide_rir18"))
    assert table1["Fractional Max-Pooling"] == (96.53, None)
    table2 = {row.label: (row.paper_accuracy, row.run) for row in tables["table2"].rows}
    assert table2["18-layer + wide ResNet Init"] == (
        75.99,
        experiments.RunSpec("wide_resnet_init18", "cifar100"),
    )
    table4 = tables["table4"].rows
    assert [(row.paper_accuracy, dict(row.run.model_kwargs)) for row in table4] == [
        (93.22, {}),
        (93.42, {"resnet_init": True}),
    ]
    depth = experiments.depth_tables()
    assert [row.paper_accuracy for row in depth["table5"].rows] == [
        92.87,
        90.06,
        92.98,
        92.11,
        93.23,
    ]
    assert [row.paper_accuracy for row in depth["table6"].rows] == [
        92.32,
        92.97,
        92.48,
        93.43,
        92.61,
        93.42,
        88.47,
        92.38,
        10.00,
        92.01,
    ]
    # RiR 15x2 of Table 5 and of Table 6 is one run.
    assert depth["table5"].rows[0].run == depth["table6"].rows[1].run
    assert depth["table5"].rows[0].run.run_id == "cifar10-rir-num_blocks=15-layers_per_block=2"
    # Other grids carry no paper number.
    other = experiments.depth_tables([(3, 1)], [1], num_blocks=3)
    assert [row.paper_accuracy for row in other["table6"].rows] == [None, None]


def test_every_run_is_a_registered_builder_call():
    specs = all_specs(experiments.main_tables()) + all_specs(experiments.depth_tables())
    assert len(set(spec.run_id for spec in specs)) == len(set(specs))
    for spec in specs:
        assert spec.model_name in models.list_models()
        inspect.signature(getattr(models, spec.model_name)).bind(**dict(spec.model_kwargs))
        assert spec.dataset in ("cifar10", "cifar100")


def test_budget_defaults_are_the_recipe():
    assert experiments.PAPER_BUDGET.recipe == training.PAPER_RECIPE
    assert experiments.PAPER_BUDGET == experiments.Budget()


def test_budget_statement():
    assert experiments.PAPER_BUDGET.reductions() == []
    assert experiments.budget_statement(experiments.PAPER_BUDGET).startswith("Budget: the paper")
    statement = experiments.budget_statement(budget(2, batch_size=100, max_train_examples=1000))
    assert statement.startswith("**Reduced budget**")
    assert "2 epochs instead of the paper's 82" in statement
    assert "1,000 training images instead of 50,000" in statement
    assert "batch size 100 instead of the paper's 500" in statement
    # The learning rate is not the paper's; other recipe fields are, the decays scaled.
    assert "decay" not in statement and "learning rate" not in statement
    recipe = training.PAPER_RECIPE.replace(learning_rate=0.1)
    assert experiments.Budget(recipe).reductions() == []
    recipe = recipe.replace(optimizer="adam", decay_epochs=(10, 20))
    assert experiments.Budget(recipe).reductions() == [
        "optimizer adam instead of the paper's sgd",
        "decay epochs (10, 20) instead of the paper's (42, 62)",
    ]


def fake_train(calls):
    """A stand-in for keras_rir.training.train that records its calls and writes results."""

    def train(model_name, data, output_dir, recipe, **kwargs):
        calls.append((model_name, kwargs["model_kwargs"], data.name, len(data.x_train)))
        results = {
            "test_accuracy": 0.5 + 0.01 * len(calls),
            "epochs": recipe.epochs,
            "num_train_examples": len(data.x_train),
            "num_test_examples": len(data.x_test),
            "wall_time_seconds": 1.0,
            "environment": {"backend": "fake", "device": "cpu: test"},
            "hyperparameters": {"model": model_name, **kwargs},
        }
        with open(os.path.join(output_dir, "results.json"), "w") as file:
            json.dump(results, file)
        return results

    return train


def test_run_bookkeeping(tmp_path):
    generated = write_cifar10(tmp_path, num_train=20, num_test=10)
    tables = [experiments.main_tables()["table3"], experiments.main_tables()["table4"]]
    output_dir = str(tmp_path / "experiment")
    run = dict(
        output_dir=output_dir,
        data_dirs={"cifar10": generated.data_dir},
        budget=budget(1, max_train_examples=10, max_test_examples=5),
    )
    calls = []
    summaries = experiments.run_experiments(tables, train_fn=fake_train(calls), **run)
    assert [call[0] for call in calls] == ["cnn32", "resnet32", "resnet_init32", "rir32"] + [
        "all_cnn_c"
    ] * 2
    assert calls[-1][1] == {"resnet_init": True}
    assert {call[3] for call in calls} == {10}
    assert {summary["status"] for summary in summaries.values()} == {"trained"}
    markdown = open(os.path.join(output_dir, "tables.md")).read()
    assert markdown.startswith("**Reduced budget**: 1 epochs instead of the paper's 82")
    assert "| RiR | 92.97 | 54.00 | -38.97 | 1 | 10 |" in markdown
    assert "| ResNet (He et al., 2015b) | 92.49 | not built here |" in markdown
    assert "The original ALL-CNN-C without batch normalization had 90.92%." in markdown
    record = json.load(open(os.path.join(output_dir, "tables.json")))
    assert len(record["runs"]) == 6 and record["reduced_budget"]
    assert record["runs"][0]["device"] == "cpu: test"

    # A second call skips every finished run.
    again = []
    summaries = experiments.run_experiments(tables, train_fn=fake_train(again), **run)
    assert again == []
    assert {summary["status"] for summary in summaries.values()} == {"skipped"}
    assert summaries["cifar10-rir32"]["test_accuracy"] == pytest.approx(0.54)

    # A killed run (run.json says "running") is trained again, and only it.
    record_path = os.path.join(output_dir, "runs", "cifar10-resnet32", "run.json")
    record = json.load(open(record_path))
    record["status"] = "running"
    json.dump(record, open(record_path, "w"))
    resumed = []
    summaries = experiments.run_experiments(tables, train_fn=fake_train(resumed), **run)
    assert [call[0] for call in resumed] == ["resnet32"]
    assert summaries["cifar10-resnet32"]["status"] == "trained"

    # A run.json of an earlier version (epochs, batch size and learning rate flat in the
    # budget) still counts as finished with the same budget; another flat budget is refused.
    record = json.load(open(record_path))
    recipe = record["budget"].pop("recipe")
    record["budget"].update({key: recipe[key] for key in ("epochs", "batch_size")})
    record["budget"]["learning_rate"] = recipe["learning_rate"]
    json.dump(record, open(record_path, "w"))
    assert experiments.Budget.from_record(record["budget"]) == run["budget"]
    summaries = experiments.run_experiments(tables, train_fn=fake_train([]), **run)
    assert summaries["cifar10-resnet32"]["status"] == "skipped"
    record["budget"]["epochs"] = 2
    assert experiments.Budget.from_record(record["budget"]) == budget(
        2, max_train_examples=10, max_test_examples=5
    )

    # Another budget in the same directory is refused.
    with pytest.raises(ValueError, match="output_dir"):
        experiments.run_experiments(
            tables,
            output_dir,
            data_dirs=run["data_dirs"],
            budget=budget(2),
            train_fn=fake_train([]),
        )


def test_model_names_filter(tmp_path):
    generated = write_cifar10(tmp_path, num_train=20, num_test=10)
    calls = []
    summaries = experiments.run_experiments(
        [experiments.main_tables()["table3"]],
        str(tmp_path / "experiment"),
        data_dirs={"cifar10": generated.data_dir},
        budget=budget(1),
        model_names=["rir32"],
        train_fn=fake_train(calls),
    )
    assert [call[0] for call in calls] == ["rir32"]
    assert list(summaries) == ["cifar10-rir32"]
    markdown = open(tmp_path / "experiment" / "tables.md").read()
    assert "| CNN | 89.03 | — |" in markdown


def test_plot_depth(tmp_path):
    table = experiments.depth_tables(layers_per_block=[2, 4])["table6"]
    summaries = {
        row.run.run_id: {"test_accuracy": 0.9} for row in table.rows if row.run.model_name == "rir"
    }
    pixels = plots.read_png(experiments.plot_depth(table, summaries, str(tmp_path / "depth.png")))
    lower = {run_id: {"test_accuracy": 0.5} for run_id in summaries}
    other = plots.read_png(experiments.plot_depth(table, lower, str(tmp_path / "lower.png")))
    plots.assert_depends_on_data(pixels, other)


def test_plot_stream_ablation(tmp_path):
    plot_stream_ablation = load_script("stream_ablation").plot_stream_ablation
    rows = [
        {"index": i, "layer": f"l{i}", "stream": s, "by": "output", "accuracy": a}
        | {"baseline_accuracy": 0.9}
        for i, s, a in [(1, "residual", 0.5), (1, "transient", 0.8), (2, "residual", 0.7)]
    ]
    pixels = plots.read_png(plot_stream_ablation(rows, str(tmp_path / "ablation.png")))
    changed = [{**row, "accuracy": 1.0 - row["accuracy"]} for row in rows]
    other = plots.read_png(plot_stream_ablation(changed, str(tmp_path / "changed.png")))
    plots.assert_depends_on_data(pixels, other)


def test_script_defaults_are_the_paper():
    reproduce_tables = load_script("reproduce_tables")
    args = reproduce_tables.parse_args([])
    assert args.table == ["1", "2", "3", "4"]
    assert experiments.budget_from_args(args) == (experiments.PAPER_BUDGET, {})
    # The recipe flags are keras-rir train's: a named budget, changed by each flag given.
    args = reproduce_tables.parse_args(["--budget", "quick", "--epochs", "2", "--seed", "1"])
    assert experiments.budget_from_args(args)[0] == experiments.Budget(
        training.QUICK_RECIPE.replace(epochs=2), seed=1
    )
    args = load_script("depth_study").parse_args([])
    assert args.configs == [(15, 2), (3, 10), (6, 5), (15, 5), (9, 3)]
    assert args.layers_per_block == [2, 4, 6, 8, 10] and args.num_blocks == 15
    args = load_script("stream_ablation").parse_args([])
    assert args.model_name == "resnet_init32" and args.by == "output"


@pytest.mark.slow
@pytest.mark.one_backend
def test_reproduce_tables_then_stream_ablation(tmp_path, capsys):
    generated = write_cifar10(tmp_path, num_train=20, num_test=10)
    output_dir = str(tmp_path / "experiment")
    argv = [
        "--table",
        "3",
        "--models",
        "resnet_init32",
        "--cifar10-dir",
        generated.data_dir,
        "--max-train-examples",
        "20",
        "--output-dir",
        output_dir,
        *TINY,
    ]
    accuracies = load_script("reproduce_tables").main(argv)
    assert list(accuracies) == ["cifar10-resnet_init32"]
    assert 0.0 <= accuracies["cifar10-resnet_init32"] <= 1.0
    markdown = open(os.path.join(output_dir, "tables.md")).read()
    assert markdown.startswith("**Reduced budget**")
    assert f"| ResNet Init | 89.62 | {100 * accuracies['cifar10-resnet_init32']:.2f} |" in markdown
    run_dir = os.path.join(output_dir, "runs", "cifar10-resnet_init32")
    assert os.path.exists(os.path.join(run_dir, "model.keras"))
    results_time = os.path.getmtime(os.path.join(run_dir, "results.json"))
    capsys.readouterr()

    # Second run: skipped, same numbers.
    assert load_script("reproduce_tables").main(argv) == accuracies
    assert "finished before, skipped" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(run_dir, "results.json")) == results_time

    # The stream ablation reuses that ResNet Init run.
    layers = ["stage1_block1_1_conv", "stage3_block5_2_conv"]
    ablation_argv = argv[4:] + ["--by", "both", "--layers", *layers]
    results = load_script("stream_ablation").main(ablation_argv)
    assert "finished before, skipped" in capsys.readouterr().out
    rows = results["output"]
    # Of the 30 generalized units of resnet_init32, the first and the last.
    assert [(row["index"], row["layer"], row["stream"]) for row in rows] == [
        (1, layers[0], "residual"),
        (1, layers[0], "transient"),
        (30, layers[1], "residual"),
        (30, layers[1], "transient"),
    ]
    assert [row["by"] for row in results["input"]] == ["input"] * 4
    for by in ("output", "input"):
        for suffix in ("json", "csv", "png"):
            assert os.path.getsize(os.path.join(output_dir, f"ablation_{by}.{suffix}")) > 0
    saved = json.load(open(os.path.join(output_dir, "ablation_output.json")))
    assert saved["budget_statement"].startswith("**Reduced budget**")
    assert saved["rows"] == rows


@pytest.mark.slow
@pytest.mark.one_backend
def test_depth_study(tmp_path, capsys):
    generated = write_cifar10(tmp_path, num_train=20, num_test=10)
    output_dir = str(tmp_path / "depth")
    argv = [
        "--configs",
        "3x1",
        "--layers-per-block",
        "1",
        "--num-blocks",
        "3",
        "--cifar10-dir",
        generated.data_dir,
        "--output-dir",
        output_dir,
        *TINY,
    ]
    accuracies = load_script("depth_study").main(argv)
    # RiR 3x1 appears in Tables 5 and 6 but is trained once.
    assert sorted(accuracies) == [
        "cifar10-resnet-num_blocks=3-layers_per_block=1",
        "cifar10-rir-num_blocks=3-layers_per_block=1",
    ]
    for name in ("depth.md", "depth.json", "depth.png"):
        assert os.path.getsize(os.path.join(output_dir, name)) > 0
    markdown = open(os.path.join(output_dir, "depth.md")).read()
    assert markdown.startswith("**Reduced budget**: 1 epochs")
    assert "| RiR, 3 blocks x 1 layers | — |" in markdown
    capsys.readouterr()
    assert load_script("depth_study").main(argv) == accuracies
    assert capsys.readouterr().out.count("finished before, skipped") == 2
