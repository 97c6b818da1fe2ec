"""useGpu: picking the task's GPU, and the CPU fallback (this machine has no GPU)."""

import json
import logging
import os

import pytest
from conftest import assert_same_predictions, predictions
from pyspark.resource import ResourceInformation

from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier, devices
from skol_spark.persistence import model_from_parts, model_to_parts


@pytest.fixture
def fresh_process(monkeypatch, caplog):
    """The module state of a worker that has not settled its device yet."""
    monkeypatch.setattr(devices, "_worker_address", devices._UNSET)
    monkeypatch.setattr(devices, "_warned", False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unchanged")
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    caplog.set_level(logging.WARNING, logger="skol_spark.devices")
    return caplog


def _fallback_warnings(caplog):
    return [r for r in caplog.records if "useGpu=True but no GPU" in r.getMessage()]


def test_gpu_addresses_from_task_resources():
    assert devices.gpu_addresses(None) == []  # no TaskContext
    assert devices.gpu_addresses({}) == []  # a task without resources
    assert devices.gpu_addresses({"fpga": ResourceInformation("fpga", ["0"])}) == []
    assert devices.gpu_addresses({"gpu": ResourceInformation("gpu", ["1", "3"])}) == ["1", "3"]


def test_pick_gpu_takes_the_assigned_one_and_warns_once_without(fresh_process):
    assert devices.pick_gpu(False, ["0"]) is None
    assert devices.pick_gpu(True, ["1", "3"]) == "1"
    assert not _fallback_warnings(fresh_process)
    assert devices.pick_gpu(True, []) is None
    assert devices.pick_gpu(True, []) is None
    (record,) = _fallback_warnings(fresh_process)
    assert "\n" not in record.getMessage() and "spark.task.resource.gpu.amount" in record.getMessage()


def test_device_environment_hides_or_exposes_one_gpu():
    assert devices.device_environment(None) == {"CUDA_VISIBLE_DEVICES": ""}
    assert devices.device_environment("2") == {
        "CUDA_VISIBLE_DEVICES": "2",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }


def test_worker_without_gpu_falls_back_to_cpu_once(fresh_process):
    assert devices.configure_worker_devices(True, []) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    # Settled: later tasks keep the CPU and do not warn again.
    assert devices.configure_worker_devices(True, ["1"]) is None
    assert len(_fallback_warnings(fresh_process)) == 1


def test_worker_with_an_assigned_gpu_shows_only_that_one(fresh_process):
    assert devices.configure_worker_devices(True, ["1", "3"]) == "1"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert not _fallback_warnings(fresh_process)


def test_worker_with_use_gpu_off_hides_every_gpu_silently(fresh_process):
    assert devices.configure_worker_devices(False, ["0"]) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert not _fallback_warnings(fresh_process)


def test_use_gpu_without_gpu_fits_and_transforms_on_cpu_like_use_gpu_off(
    fresh_process, train_df, test_df, tiny_params
):
    model = BiLSTMClassifier(useGpu=True, **{**tiny_params, "epochs": 1}).fit(train_df)
    (record,) = _fallback_warnings(fresh_process)
    assert "the Spark driver" in record.getMessage()
    assert model.getUseGpu() is True
    cpu = model.copy({model.useGpu: False})
    assert_same_predictions(predictions(model, test_df), predictions(cpu, test_df))


def test_use_gpu_is_saved_and_old_models_without_it_load_with_the_default(fitted):
    on = fitted.copy({fitted.useGpu: True})
    metadata, body = model_to_parts(on, "4.0")
    assert json.loads(metadata)["paramMap"]["useGpu"] is True
    assert model_from_parts(BiLSTMClassificationModel, metadata, body, "test").getUseGpu() is True

    old = json.loads(metadata)
    del old["paramMap"]["useGpu"], old["defaultParamMap"]["useGpu"]
    loaded = model_from_parts(BiLSTMClassificationModel, json.dumps(old), body, "old model")
    assert loaded.getUseGpu() is False
    assert not loaded.isSet(loaded.useGpu)
