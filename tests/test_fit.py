"""The fit certificate: flash, RAM (TFLM arena + CMSIS-NN scratch), MACs, and budgets."""

import json

import numpy as np
import pytest

import tfq_pareto
import tflite_export
from tflite_export import fit, runtime
from tfq_pareto import keras

from conftest import build_plain_cnn


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = tfq_pareto.apply(build_plain_cnn(num_classes=4), conv_bits=1)
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype("float32")
    out = tmp_path_factory.mktemp("fit")
    return model, x, tflite_export.export(model, x, str(out), name="net")


def test_macs_are_counted_from_the_layer_shapes(exported):
    _, _, result = exported
    # build_plain_cnn on 8x8x1: conv1 3x3, 1 -> 8, stride 1: 8*8*8 outputs x 9 MACs;
    # conv2 3x3, 8 -> 16, stride 2: 4*4*16 outputs x 72; logits: 256 -> 4 units.
    expected = 8 * 8 * 8 * 9 + 4 * 4 * 16 * 72 + 256 * 4
    assert result.manifest["fit"]["macs"] == expected == 24_064


def test_cmsis_nn_scratch_follows_the_get_buffer_size_formulas(exported):
    _, _, result = exported
    scratch = result.manifest["fit"]["cmsis_nn_scratch"]
    sizes = sorted(r["bytes"] for r in scratch["per_op"])
    # conv1: K*K*C_in = 9 -> DSP 2 * align4(9) * 2 = 48, MVE 4 * 16 * ceil(9/16) = 64;
    # conv2: 72 -> DSP 2 * 72 * 2 = 288, MVE 4 * 16 * ceil(72/16) = 320;
    # logits (a 1x1 conv, stride 1, on a 1x1 map of 256 channels, in the int8 file):
    # DSP 2 * 256 * 2 = 1024.
    assert sizes == [64, 320, 1024] and scratch["largest_bytes"] == 1024
    certificate = result.manifest["fit"]
    assert certificate["ram_bytes"] == result.totals["tflm_arena_bytes_packed"]
    assert certificate["ram_bytes_upper_bound"] == certificate["ram_bytes"] + 1024


def test_the_certificate_holds_on_the_interpreter(exported):
    _, x, result = exported
    certificate = result.manifest["fit"]
    packed = open(result.files["packed"], "rb").read()
    assert certificate["flash_bytes"] == len(packed)
    assert tflite_export.read_c_array(result.files["cc"]) == packed
    int8 = open(result.files["int8"], "rb").read()
    inputs = tflite_export.convert.quantize_inputs(x[:1], runtime.io_details(int8)[0])
    runtime.micro_outputs(packed, inputs, certificate["ram_bytes"])  # runs at the certified size
    with pytest.raises(runtime.MicroError):
        runtime.micro_outputs(packed, inputs, certificate["ram_bytes"] - runtime.ARENA_STEP)
    assert certificate["tflm_invoke_seconds_host"] > 0 and certificate["tflm_version"]
    on_disk = json.load(open(result.files["manifest"], encoding="utf-8"))
    assert on_disk["fit"] == json.loads(json.dumps(certificate))


def test_budget_margins_and_the_error_that_names_what_is_over(exported):
    _, _, result = exported
    certificate = result.manifest["fit"]
    flash, ram = certificate["flash_bytes"], certificate["ram_bytes_upper_bound"]
    roomy = tflite_export.Budget(flash + 100, ram + 200, max_macs=30_000, name="roomy")
    check = roomy.check(certificate)
    assert check["fits"] and check["margins"] == {"flash_bytes": 100, "ram_bytes": 200,
                                                  "macs": 30_000 - 24_064}
    tight = tflite_export.Budget(flash - 10, ram + 1, max_macs=20_000, name="tight")
    check = tight.check(certificate)
    assert not check["fits"] and check["over"] == ["flash over by 10 B", "macs over by 4,064"]
    with pytest.raises(tflite_export.BudgetError,
                       match=r"budget 'tight'.*flash over by 10 B; macs over by 4,064"):
        fit.enforce(tight, certificate)


def test_export_reports_a_budget_and_refuses_to_write_when_enforced(exported, tmp_path):
    model, x, result = exported
    flash = result.manifest["fit"]["flash_bytes"]
    budget = tflite_export.Budget(flash - 1, 10**6, name="small flash")
    with pytest.raises(tflite_export.BudgetError, match="flash over by 1 B"):
        tflite_export.export(model, x, str(tmp_path / "enforced"), name="net", budget=budget,
                             enforce_budget=True)
    assert not (tmp_path / "enforced").exists()
    reported = tflite_export.export(model, x, str(tmp_path / "reported"), name="net",
                                    budget=budget)
    assert reported.manifest["fit"]["budget"]["fits"] is False
    assert reported.manifest["fit"]["budget"]["margins"]["flash_bytes"] == -1


@pytest.mark.parametrize("kwargs,match", [
    ({"flash_bytes": 0, "ram_bytes": 1}, "flash_bytes must be an int >= 1"),
    ({"flash_bytes": 1, "ram_bytes": 1.5}, "ram_bytes must be an int >= 1"),
    ({"flash_bytes": 1, "ram_bytes": 1, "max_macs": -1}, "max_macs must be a number > 0"),
])
def test_bad_budgets_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tflite_export.Budget(**kwargs)


def test_device_budgets_keep_the_documented_reserves():
    f746 = tflite_export.DEVICES["stm32f746ng"]
    assert (f746.flash_bytes, f746.sram_bytes) == (1024 * 1024, 320 * 1024)  # RM0385 / DS10916
    budget = tflite_export.Budget.for_device("stm32f746ng")
    assert budget.flash_bytes == 1024 * 1024 - fit.FLASH_RESERVE_BYTES
    assert budget.ram_bytes == 320 * 1024 - 40 * 1024  # 1/8 of the SRAM kept
    small = tflite_export.Budget.for_device("stm32l432kc")
    assert small.ram_bytes == 64 * 1024 - 8 * 1024 and small.name == "stm32l432kc"
    assert tflite_export.Budget.for_device("nrf52840", ram_reserve_bytes=0).ram_bytes == 256 * 1024
    with pytest.raises(ValueError, match=r"unknown device 'esp8266'; known: \["):
        tflite_export.Budget.for_device("esp8266")
    with pytest.raises(ValueError, match="leave nothing"):
        tflite_export.Budget.for_device("stm32l432kc", flash_reserve_bytes=256 * 1024)
    for name, device in tflite_export.DEVICES.items():
        assert device.flash_bytes > 0 and device.sram_bytes > 0 and device.core, name


def test_bad_budget_arguments_to_export_fail_before_work(exported, tmp_path):
    model, x, _ = exported
    with pytest.raises(ValueError, match="budget must be a tflite_export.Budget"):
        tflite_export.export(model, x, str(tmp_path / "a"), budget={"flash_bytes": 1})
    with pytest.raises(ValueError, match="enforce_budget=True needs a budget"):
        tflite_export.export(model, x, str(tmp_path / "b"), enforce_budget=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
