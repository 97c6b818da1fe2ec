"""network.py on Keras' JAX backend gives TensorFlow's probabilities and loss for the same weights.

TensorFlow stays the default and the backend every other test uses; Keras
picks its backend once per process, so JAX runs in a subprocess. No Spark.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from skol_spark.core.windows import predict_block
from skol_spark.nn.network import WeightedSparseCategoricalCrossentropy, build_network
from skol_spark.nn.projection import make_forward
from skol_spark.nn.trained_network import weights_to_bytes

ROOT = Path(__file__).resolve().parents[1]
NETWORK = dict(window_size=7, num_features=5, num_classes=3, hidden_size=4, num_layers=2, dropout=0.2, seed=11)
CLASS_WEIGHTS = [1.0, 4.0, 2.5]

JAX_SIDE = r"""
import json, sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from skol_spark.nn.network import WeightedSparseCategoricalCrossentropy, build_network, model_from_json
from skol_spark.nn.trained_network import weights_from_bytes

inputs = np.load(sys.argv[1])
weights = weights_from_bytes(open(sys.argv[2], "rb").read())
built = build_network(**json.loads(sys.argv[3]))
built.set_weights(weights)
rebuilt = model_from_json(open(sys.argv[4]).read())
rebuilt.set_weights(weights)
x, mask = inputs["x"], inputs["mask"]
probs = keras.ops.convert_to_numpy(built([x, mask], training=False))
probs_rebuilt = keras.ops.convert_to_numpy(rebuilt([x, mask], training=False))
loss = WeightedSparseCategoricalCrossentropy(json.loads(sys.argv[5]))
value = float(loss(inputs["y"], probs, sample_weight=mask.astype("float32")))
# The executor's path off TensorFlow: numpy windows through the plain forward pass.
from skol_spark.nn.projection import make_forward
from skol_spark.core.windows import predict_block
labelled = predict_block(make_forward(built), inputs["rows"], inputs["lengths"], 7, 5, 4, 3)
np.savez(sys.argv[6], probs=probs, probs_rebuilt=probs_rebuilt, loss=value, labelled=labelled)
"""


def _jax_available() -> bool:
    return importlib.util.find_spec("jax") is not None and importlib.util.find_spec("jaxlib") is not None


def test_network_and_loss_match_tensorflow_on_jax(tmp_path):
    import json

    if not _jax_available():
        if os.environ.get("CI"):
            pytest.fail("jax is not installed; the test extra (setup.cfg) should have installed it")
        pytest.skip("jax is not installed (pip install -e '.[test]')")
    assert keras.backend.backend() == "tensorflow"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, NETWORK["window_size"], NETWORK["num_features"])).astype(np.float32)
    mask = np.ones((3, NETWORK["window_size"]), dtype=bool)
    mask[1, 4:] = False  # a short document: padded steps
    y = rng.integers(0, NETWORK["num_classes"], size=mask.shape).astype(np.int32)
    net = build_network(**NETWORK)
    probs = keras.ops.convert_to_numpy(net([x, mask], training=False))
    loss = float(WeightedSparseCategoricalCrossentropy(CLASS_WEIGHTS)(y, probs, sample_weight=mask.astype("float32")))
    rows = rng.normal(size=(20, NETWORK["num_features"])).astype(np.float32)
    lengths = np.array([12, 3, 5])
    labelled = predict_block(make_forward(net), rows, lengths, 7, 5, 4, 3)  # TensorFlow's in-graph path

    np.savez(tmp_path / "inputs.npz", x=x, mask=mask, y=y, rows=rows, lengths=lengths)
    (tmp_path / "weights.npz").write_bytes(weights_to_bytes(net.get_weights()))
    (tmp_path / "model.json").write_text(net.to_json())
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    done = subprocess.run(
        [sys.executable, "-c", JAX_SIDE, str(tmp_path / "inputs.npz"), str(tmp_path / "weights.npz"),
         json.dumps(NETWORK), str(tmp_path / "model.json"), json.dumps(CLASS_WEIGHTS), str(tmp_path / "out.npz")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["probs"], probs, atol=1e-5)
    np.testing.assert_allclose(out["probs_rebuilt"], probs, atol=1e-5)
    assert float(out["loss"]) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(out["labelled"], labelled, atol=1e-5)
