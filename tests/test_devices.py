"""useGpu: picking the task's GPU, the CPU fallback (this machine has no GPU), and placement per model."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_same_predictions, model_of, parts_of, predictions
from pyspark.resource import ResourceInformation

from skol_spark import BiLSTMClassifier
from skol_spark.core import devices

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_process(monkeypatch, caplog):
    """The module state of a worker that has not warned yet."""
    monkeypatch.setattr(devices, "_warned", False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unchanged")
    caplog.set_level(logging.WARNING, logger="skol_spark.core.devices")
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


def test_each_task_gets_its_own_device_and_nothing_is_hidden(fresh_process):
    import tensorflow as tf

    visible = tf.config.get_visible_devices()
    assert devices.task_device(False, ["0"]) == "/CPU:0"
    assert not _fallback_warnings(fresh_process)
    # useGpu=True without a GPU: the CPU, one warning per process.
    assert devices.task_device(True, []) == "/CPU:0"
    assert devices.task_device(True, ["1"]) == "/CPU:0"
    assert len(_fallback_warnings(fresh_process)) == 1
    # A later useGpu=False model is not affected by the earlier ones, and TensorFlow still sees every device.
    assert devices.task_device(False, []) == "/CPU:0"
    assert tf.config.get_visible_devices() == visible == tf.config.list_physical_devices()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "unchanged"


_PLACEMENT = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from skol_spark.nn.network import build_network
from skol_spark.nn.trained_network import TrainedNetwork
from skol_spark.transform.predict import build_count, get_network
network = TrainedNetwork.from_keras(build_network(8, 5, 3, hidden_size=4, num_layers=1, seed=1, embedding_size=4))
rows = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
index, mask = np.arange(8)[None].clip(max=5).astype("int32"), (np.arange(8) < 6)[None]
outputs = []
for device in ("/CPU:1", "/CPU:0"):
    forward = get_network(network, device, "keras")  # the Keras path places its weights on the device
    placed = {v.value.device.rsplit("device:", 1)[-1] for v in forward.model.weights}
    assert placed == {device.strip("/")}, (device, placed)
    outputs.append(forward.from_rows(forward.prepare(forward.projection(rows)), index, mask))
assert np.allclose(outputs[0], outputs[1], atol=1e-6)
assert build_count(network.digest) == 2
assert len(tf.config.get_visible_devices("CPU")) == 1
print("ok")
"""


def test_a_models_device_decides_where_its_own_network_lives():
    """Two models in one worker, on two (logical) devices: each network's weights sit on its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _PLACEMENT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


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


def test_transform_leaves_the_python_workers_environment_alone(spark, fitted, test_df):
    """A reused worker that labelled rows shows later UDFs the environment it had before."""
    import pandas as pd

    def environment(frames):
        for _ in frames:
            pass
        yield pd.DataFrame({"pid": [os.getpid()], "env": [json.dumps(dict(os.environ), sort_keys=True)]})

    def seen():
        rows = spark.range(4, numPartitions=4).mapInPandas(environment, "pid long, env string").collect()
        return {r.pid: r.env for r in rows}

    before = seen()
    fitted.transform(test_df).collect()
    after = seen()
    for pid in set(before) & set(after):  # the workers that ran before and after the transform
        assert json.loads(after[pid]) == json.loads(before[pid])
    assert set(before) & set(after), "no Python worker was reused"
