"""useGpu: picking the task's GPU, and the CPU fallback (this machine has no GPU)."""

import json
import logging
import os

import pytest
from conftest import assert_same_predictions, model_of, parts_of, predictions
from pyspark.resource import ResourceInformation

from skol_spark import BiLSTMClassifier, devices


@pytest.fixture
def fresh_process(monkeypatch, caplog):
    """The module state of a worker that has not settled its device yet."""
    monkeypatch.setattr(devices, "_worker_address", devices._UNSET)
    monkeypatch.setattr(devices, "_warned", False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unchanged")
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    monkeypatch.setattr(devices, "_restrict_tensorflow", lambda address: restricted.append(address))
    restricted: list = []
    caplog.restricted = restricted
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


def test_worker_without_gpu_falls_back_to_cpu_once(fresh_process):
    assert devices.configure_worker_devices(True, []) is None
    assert fresh_process.restricted == [None]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "unchanged"  # the environment is left alone
    # Settled: later tasks keep the CPU and do not warn again.
    assert devices.configure_worker_devices(True, ["1"]) is None
    assert len(_fallback_warnings(fresh_process)) == 1


def test_worker_with_an_assigned_gpu_shows_only_that_one(fresh_process):
    assert devices.configure_worker_devices(True, ["1", "3"]) == "1"
    assert fresh_process.restricted == ["1"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "unchanged"
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in os.environ
    assert not _fallback_warnings(fresh_process)


def test_worker_with_use_gpu_off_hides_every_gpu_silently(fresh_process):
    assert devices.configure_worker_devices(False, ["0"]) is None
    assert fresh_process.restricted == [None]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "unchanged"
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
    metadata, body = parts_of(on)
    assert json.loads(metadata)["paramMap"]["useGpu"] is True
    assert model_of(metadata, body).getUseGpu() is True

    old = json.loads(metadata)
    del old["paramMap"]["useGpu"], old["defaultParamMap"]["useGpu"]
    loaded = model_of(json.dumps(old), body, "old model")
    assert loaded.getUseGpu() is False
    assert not loaded.isSet(loaded.useGpu)


def test_restricting_tensorflow_hides_gpus_from_tensorflow_only(monkeypatch):
    """The real TensorFlow call: no GPU visible to TensorFlow, the environment untouched."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unchanged")
    devices._restrict_tensorflow(None)
    assert devices.visible_gpus() == []
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "unchanged"


def test_transform_leaves_the_python_workers_environment_alone(spark, fitted, test_df):
    """A reused worker that labelled rows shows later UDFs the environment it had before."""
    import pandas as pd

    def environment(frames):
        for _ in frames:
            pass
        yield pd.DataFrame({"cuda": [os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")]})

    def seen():
        return {r.cuda for r in spark.range(4, numPartitions=4).mapInPandas(environment, "cuda string").collect()}

    before = seen()
    fitted.transform(test_df).collect()
    assert seen() == before
