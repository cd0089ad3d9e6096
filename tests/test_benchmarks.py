"""Every benchmark script runs end to end on a tiny setting; no times are asserted."""

import json
import math
import statistics

import keras
import numpy as np
import pytest

import keras_rir
from benchmarks import (
    common,
    epoch_split,
    gap_attribution,
    input_pipeline,
    overhead,
    run_all,
    torch_reference,
    train_step,
)
from benchmarks.flops import multiply_adds
from keras_rir.layers import GeneralizedResidualConv2D
from keras_rir.regularizers import PartialIdentityDecay

TINY = ["--steps", "1", "--windows", "2", "--warmup", "0", "--image-size", "8"]


def load(path):
    with open(path) as file:
        return json.load(file)


def test_train_step_runs_and_records(tmp_path):
    path = tmp_path / "train_step.json"
    results = train_step.main(
        ["--models", "cnn32", "--batch-sizes", "2", "--json", str(path), *TINY]
    )
    data = load(path)
    assert data["environment"]["backend"] == keras.backend.backend()
    assert data["cpu_peak"]["gflops"] > 0
    (result,) = data["results"]
    assert result["images_per_s"] == pytest.approx(results[0]["images_per_s"])
    assert result["model"] == "cnn32" and result["batch_size"] == 2
    # Throughput from the recorded windows: batch 2 x 1 step per window over its duration.
    windows = result["window_s"]
    assert len(windows) == 2 and all(seconds > 0 for seconds in windows)
    assert result["images_per_s"] == pytest.approx(statistics.median(2 / w for w in windows))
    assert result["images_per_s_min"] == pytest.approx(2 / max(windows))
    assert result["images_per_s_max"] == pytest.approx(2 / min(windows))
    model = keras_rir.models.cnn32(input_shape=(8, 8, 3))
    assert result["multiply_adds_per_image"] == multiply_adds(model)
    assert result["achieved_gflops"] == pytest.approx(
        result["images_per_s"] * 6 * result["multiply_adds_per_image"] / 1e9
    )
    assert result["peak_rss_mib"] > 0


def test_overhead_runs_a_pair(tmp_path):
    path = tmp_path / "overhead.json"
    ratios = overhead.main(["--pairs", "decay/l2", "--batch-size", "2", "--json", str(path), *TINY])
    (result,) = load(path)["results"]
    assert ratios == {"decay/l2": pytest.approx(result["ratio"])}
    # The same network with two regularizers: the same arithmetic.
    assert result["multiply_adds_a"] == result["multiply_adds_b"] > 0


def test_with_plain_l2_changes_only_the_regularizer():
    model = keras_rir.models.resnet_init32(input_shape=(8, 8, 3))
    clone = overhead.with_plain_l2(model)
    generalized = [layer for layer in model.layers if isinstance(layer, GeneralizedResidualConv2D)]
    assert generalized
    for layer in generalized:
        twin = clone.get_layer(layer.name)
        assert type(twin) is keras.layers.Conv2D and not twin.use_bias
        assert isinstance(layer.kernel_regularizer, PartialIdentityDecay)
        assert isinstance(twin.kernel_regularizer, keras.regularizers.L2)
        assert twin.kernel_regularizer.l2 == pytest.approx(layer.l2)
    images = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images)),
        keras.ops.convert_to_numpy(clone(images)),
        rtol=1e-5,
        atol=1e-6,
    )
    assert clone.count_params() == model.count_params()


@pytest.mark.parametrize("name", ["cnn32", "resnet32", "resnet_init32", "rir32", "wide_rir18"])
def test_torch_reference_matches_parameter_counts(name):
    keras_model = keras_rir.models.get(name, num_classes=100, input_shape=(8, 8, 3))
    assert common.trainable_parameters(keras_model) == torch_reference.parameter_count(
        torch_reference.Table7Net(name, num_classes=100)
    )


@pytest.mark.slow
def test_torch_reference_runs(tmp_path):
    path = tmp_path / "reference.json"
    speedups = torch_reference.main(
        ["--models", "rir32", "--batch-size", "2", "--json", str(path), *TINY]
    )
    (result,) = load(path)["results"]
    assert set(result["throughput"]) == {"keras_rir", "torch_contiguous", "torch_channels_last"}
    assert speedups == {"rir32": pytest.approx(result["speedup"]["ratio"])}


def test_torch_reference_generalized_init_is_partial_identity():
    torch = torch_reference.torch
    torch.manual_seed(0)
    plain = torch_reference.conv_bn(8, 8, 1, generalized=False)[0].weight.detach().numpy()
    torch.manual_seed(0)
    fused = torch_reference.conv_bn(8, 8, 1, generalized=True)[0].weight.detach().numpy()
    difference = fused - plain  # OIHW
    expected = np.zeros_like(difference)
    for channel in range(4):
        expected[channel, channel, 1, 1] = 1.0
    np.testing.assert_allclose(difference, expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.one_backend  # the driver; train_step itself runs on every backend above
def test_run_all_drives_a_subprocess_per_backend(tmp_path, capsys):
    backend = keras.backend.backend()
    summary = run_all.main(
        [
            "--backends",
            backend,
            "--parts",
            "train_step",
            "--models",
            "cnn32",
            "--batch-sizes",
            "2",
            "--out",
            str(tmp_path),
            "--",
            *TINY,
        ]
    )
    (run,) = summary["train_step"]
    assert run["results"][0]["backend"] == backend
    assert (tmp_path / "summary.json").exists()
    assert "| cnn32 | 2 | " + backend in capsys.readouterr().out


@pytest.mark.parametrize(
    "fields, cores, expected",
    [
        # 4 cores x 3.0 GHz x (2 FMA units x 16 float32 lanes x 2 FLOPs) with AVX-512.
        ({"CPU max MHz": "3000.0000", "Flags": "fpu sse avx avx2 fma avx512f"}, 4, 768.0),
        # 2 cores x (BogoMIPS 4400 / 2 = 2.2 GHz) x (2 x 8 lanes x 2) with AVX2 and FMA.
        ({"BogoMIPS": "4400.00", "Flags": "fpu sse avx avx2 fma"}, 2, 140.8),
        # 1 core x 2.0 GHz x 8 without AVX2 + FMA (AVX2 alone is not enough).
        ({"CPU max MHz": "2000", "Flags": "fpu sse avx avx2"}, 1, 16.0),
    ],
)
def test_cpu_peak_estimate_from_lscpu_fields(monkeypatch, fields, cores, expected):
    monkeypatch.setattr(common, "_lscpu", lambda: {**fields, "Model name": "test CPU"})
    monkeypatch.setattr(common.os, "cpu_count", lambda: cores)
    peak = common.cpu_peak_gflops()
    assert peak["gflops"] == pytest.approx(expected)
    assert (peak["cores"], peak["model"]) == (cores, "test CPU")


def test_paired_ratio_and_throughput_formulas():
    ratio = common.paired_ratio([2.0, 3.0, 4.0], [1.0, 2.0, 4.0])
    assert ratio["ratio"] == pytest.approx(1.5)
    assert (ratio["ratio_min"], ratio["ratio_max"]) == (1.0, 2.0)
    rate = common.throughput([1.0, 2.0, 4.0], steps=2, batch_size=10)
    assert rate["images_per_s"] == pytest.approx(10.0)
    assert (rate["images_per_s_min"], rate["images_per_s_max"]) == (5.0, 20.0)


def test_median_interval_is_the_binomial_order_statistics():
    # n = 20: the classic 95% interval of the median is [x_(6), x_(15)], coverage 0.9586.
    low, high, coverage = common.median_interval(list(range(20, 0, -1)))
    assert (low, high) == (6, 15)
    assert coverage == pytest.approx(1 - 2 * sum(math.comb(20, i) for i in range(6)) / 2**20)
    # Too few values for 95%: the full range and its own coverage.
    assert common.median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0, pytest.approx(0.75))


def test_overhead_goal_status_needs_the_interval_on_one_side():
    result = {"goal": 1.02, "meets_goal": True, "goal_resolved": False}
    assert run_all.goal_status(result) == "unresolved (median meets it)"
    assert run_all.goal_status({**result, "goal_resolved": True}) == "yes"
    assert run_all.goal_status({**result, "meets_goal": False, "goal_resolved": True}) == "no"
    assert run_all.goal_status({"goal": None}) == "-"


@pytest.mark.parametrize("model_name", ["cnn32", "wide_cnn18"])
def test_gap_attribution_variants_match_the_reference(model_name):
    model = keras_rir.models.get(model_name, input_shape=(8, 8, 3))
    images = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    expected = keras.ops.convert_to_numpy(model(images))
    for variant in gap_attribution.VARIANTS:
        clone, from_logits = gap_attribution.keras_variant(model, variant)
        _, step = gap_attribution.torch_variant(
            model_name, gap_attribution.VARIANTS[variant], 10, images, np.zeros(2, "int32"), 0
        )
        reference = gap_attribution.torch_reference.parameter_count(step.net)
        assert common.trainable_parameters(clone) == reference, variant
        if variant == "no_batch_norm":
            assert not any(isinstance(x, keras.layers.BatchNormalization) for x in clone.layers)
            continue
        clone.set_weights(model.get_weights())
        batch = images.transpose(0, 3, 1, 2) if variant == "channels_first" else images
        outputs = keras.ops.convert_to_numpy(clone(batch))
        if from_logits:
            outputs = keras.ops.convert_to_numpy(keras.ops.softmax(outputs))
        np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5, err_msg=variant)
    penalties = gap_attribution.keras_variant(model, "no_penalty")[0].losses
    assert model.losses and not penalties


def test_gap_attribution_runs(tmp_path):
    path = tmp_path / "gap.json"
    ratios = gap_attribution.main(["--batch-size", "2", "--json", str(path), *TINY])
    (result,) = load(path)["results"]
    assert set(ratios) == set(gap_attribution.VARIANTS)
    assert ratios["logits"] == pytest.approx(result["keras_over_torch"]["logits"]["ratio"])
    variants = gap_attribution.VARIANTS
    assert set(result["throughput"]) == {f"keras_{name}" for name in variants} | {
        f"torch_{name}" for name in ("as_built", "no_penalty", "no_batch_norm")
    }


def test_input_pipeline_runs(tmp_path):
    path = tmp_path / "input.json"
    ratio = input_pipeline.main(
        ["--model", "cnn32", "--batch-size", "2", "--json", str(path), *TINY]
    )
    (result,) = load(path)["results"]
    assert ratio == pytest.approx(result["ratio"]["ratio"])
    assert set(result["throughput"]) == {"preprocessing", "training"}


def test_epoch_split_separates_the_steps_from_the_rest_of_fit(tmp_path):
    path = tmp_path / "split.json"
    per_1000 = epoch_split.main(
        ["--model", "cnn32", "--batch-size", "4", "--steps", "2", "--rounds", "2"]
        + ["--image-size", "8", "--compile-variants", "--json", str(path)]
    )
    result = load(path)["results"]
    totals, in_steps = result["seconds_per_1000_images"], result["in_steps_seconds_per_1000_images"]
    assert set(per_1000) == {"fit", "fit_no_augment", "train_on_batch", "evaluate"}
    assert set(in_steps) == {"fit", "fit_no_augment"}
    for name, values in in_steps.items():
        assert len(values) == 2
        assert all(0 < inside <= total for inside, total in zip(values, totals[name], strict=True))
    epoch = result["epoch_estimate"]
    assert epoch["outside_steps_s"] >= 0
    assert epoch["training_s"] == pytest.approx(
        50 * statistics.median(in_steps["fit"]) + epoch["outside_steps_s"]
    )


def test_interleaved_windows_alternate_in_abba_order():
    calls = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    durations = common.interleaved_windows(steps, steps=2, windows=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert {name: len(window_s) for name, window_s in durations.items()} == {"a": 3, "b": 3}
