"""A data-parallel step (skol_spark.fit.distributed) is the driver fit's step on the global batch.

Two ranks (threads of one JAX subprocess, joined by the TCP ring) each take
half of a batch's windows and run two steps: the whole-network step on dense
windows, and the row-sparse step on CSR rows with either exchange of the
kernel rows. Their weights must equal, bit for bit between the ranks, what
the driver fit's own Keras training on TensorFlow makes of the whole batch
in two ``train_on_batch`` calls: Adam for dense rows, the sparse training
model and LazyAdam for CSR rows. A single rank (the driver fit on JAX) takes
the whole batch with both steps, exchanging nothing, and must equal them
too. No Spark.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from skol_spark.core.windows import window_rows
from skol_spark.fit.sparse_training import batch_inputs, sparse_training_model
from skol_spark.fit.training import TrainingConfig, compile_trainer, new_network
from skol_spark.fit.training_data import FeatureRows, TrainingData
from skol_spark.nn.trained_network import weights_to_bytes

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(window_size=6, num_classes=3, class_weights=[1.0, 3.0, 0.5], hidden_size=4, embedding_size=3,
              num_layers=1, dropout=0.0, output_layer="softmax", epochs=1, batch_size=4, learning_rate=0.05,
              seed=5, validation_fraction=0.0, early_stopping_patience=0, predict_batch_size=8)
WIDTH, ROWS = 40, 30
STEPS = 2
WINDOWS = np.array([0, 6, 12, 18]), np.array([6, 4, 6, 5])  # starts and lengths; two short windows: padding

JAX_SIDE = r"""
import json, sys, threading
import numpy as np
import keras
assert keras.backend.backend() == "jax"
from skol_spark.fit.distributed.ring import Ring, free_port
from skol_spark.fit.distributed.steps import Collective, DenseStep
from skol_spark.fit.distributed.sparse_steps import RowSparseStep, choose_exchange
from skol_spark.fit.distributed.rank import dense_windows
from skol_spark.fit.training import TrainingConfig, new_network
from skol_spark.fit.training_data import FeatureRows, TrainingData
from skol_spark.nn.trained_network import weights_from_bytes

inputs = np.load(sys.argv[1])
config = TrainingConfig(**json.loads(sys.argv[2]))
weights = weights_from_bytes(open(sys.argv[3], "rb").read())
csr = (inputs["indptr"], inputs["indices"], inputs["values"])
data = {"dense": TrainingData(FeatureRows(np.arange(len(inputs["labels"])), int(inputs["width"]),
                                          dense=inputs["dense"]), inputs["labels"], np.array([len(inputs["labels"])])),
        "sparse": TrainingData(FeatureRows(np.arange(len(inputs["labels"])), int(inputs["width"]), csr=csr),
                               inputs["labels"], np.array([len(inputs["labels"])]))}
rows, mask = inputs["rows"], inputs["mask"]
half = len(rows) // 2
ports = [free_port("127.0.0.1") for _ in range(2)]
out = {}

def rank(r, kind):
    ring = Ring(r, [f"127.0.0.1:{p}" for p in ports], "token", timeout=60)
    network = new_network(config, int(inputs["width"]))
    network.set_weights(weights)
    collective = Collective(ring)
    mine = slice(r * half, (r + 1) * half)
    if kind == "dense":
        step = DenseStep(network, config.learning_rate, collective, r)
        batch = (dense_windows(data["dense"], rows[mine], mask[mine]), mask[mine], inputs["y"][mine])
    else:  # "gather" or "sparse-dense": the row-sparse step and its two exchanges of the kernel rows
        step = RowSparseStep(network, config.learning_rate, collective, r, config.window_size, half)
        step.configure((256, 256), "gather" if kind == "gather" else "dense")
        batch = (step.pack(data["sparse"], rows[mine], mask[mine]), mask[mine], inputs["y"][mine])
    state = step.state(network)
    class_weights = collective.put(np.asarray(config.class_weights, np.float32))
    calls = []  # host work handed to each step, to run during its exchange
    for _ in range(int(sys.argv[5])):
        step.step(state, batch, class_weights, meanwhile=lambda: calls.append(np.ones(1000).sum()))
    out[f"{kind}_{r}"] = step.weights(state)
    out[f"{kind}_{r}_meanwhile"] = [np.array([len(calls)])]
    ring.close()

for kind in ("dense", "gather", "sparse-dense"):
    threads = [threading.Thread(target=rank, args=(r, kind)) for r in (0, 1)]
    for t in threads: t.start()
    for t in threads: t.join()

# One rank with the whole batch: nothing crosses a ring.
for kind in ("one-dense", "one-sparse"):
    network = new_network(config, int(inputs["width"]))
    network.set_weights(weights)
    collective = Collective(Ring(0, ["127.0.0.1:0"], "token"))
    if kind == "one-dense":
        step = DenseStep(network, config.learning_rate, collective, 0)
        batch = (dense_windows(data["dense"], rows, mask), mask, inputs["y"])
    else:
        step = RowSparseStep(network, config.learning_rate, collective, 0, config.window_size, len(rows))
        exchange = choose_exchange(1, 1024, int(inputs["width"]), step.units)
        step.configure((1024, 1024), exchange, [(512, 512), (768, 768)])
        batch = (step.pack(data["sparse"], rows, mask), mask, inputs["y"])
        out["one-sparse_layout"] = [np.array([exchange == "local", len(batch[0][0]), len(batch[0][1])])]
    state = step.state(network)
    class_weights = collective.put(np.asarray(config.class_weights, np.float32))
    calls = []
    for _ in range(int(sys.argv[5])):
        step.step(state, batch, class_weights, meanwhile=lambda: calls.append(1))
    out[f"{kind}_0"] = step.weights(state)
    out[f"{kind}_0_meanwhile"] = [np.array([len(calls)])]
np.savez(sys.argv[4], **{f"{k}/{i}": a for k, v in out.items() for i, a in enumerate(v)})
"""


def _data() -> tuple[np.ndarray, TrainingData, TrainingData]:
    rng = np.random.default_rng(3)
    dense = np.zeros((ROWS, WIDTH), np.float32)
    for r in range(ROWS):  # sparse rows: a few columns each, overlapping between rows
        dense[r, rng.choice(WIDTH, size=rng.integers(1, 6), replace=False)] = rng.uniform(0.5, 2.0)
    labels = rng.integers(0, 3, ROWS).astype(np.int32)
    order, lengths = np.arange(ROWS), np.array([ROWS])
    csr_rows = [np.flatnonzero(row) for row in dense]
    indptr = np.concatenate([[0], np.cumsum([len(c) for c in csr_rows])]).astype(np.int64)
    indices = np.concatenate(csr_rows).astype(np.int32)
    values = dense[np.repeat(np.arange(ROWS), np.diff(indptr)), indices]
    as_dense = TrainingData(FeatureRows(order, WIDTH, dense=dense), labels, lengths)
    as_sparse = TrainingData(FeatureRows(order, WIDTH, csr=(indptr, indices, values)), labels, lengths)
    return dense, as_dense, as_sparse


def _driver_steps(data: TrainingData, rows: np.ndarray, mask: np.ndarray, y: np.ndarray, sparse: bool):
    """Two steps of the driver fit's own training on the whole batch (TensorFlow)."""
    config = TrainingConfig(**CONFIG)
    network = new_network(config, WIDTH)
    model = sparse_training_model(network) if sparse else network
    trainer = compile_trainer(model, config, sparse_rows=sparse)
    if sparse:
        inputs = batch_inputs(data, rows, mask)
    else:
        inputs = [data.features[np.where(mask, rows, 0)] * mask[..., None], mask]
    for _ in range(STEPS):
        trainer.train_on_batch(inputs, y, sample_weight=mask.astype(np.float32))
    return network.get_weights()


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    if importlib.util.find_spec("jax") is None:
        if os.environ.get("CI"):
            pytest.fail("jax is not installed; the test extra (setup.cfg) should have installed it")
        pytest.skip("jax is not installed (pip install -e '.[test]')")
    assert keras.backend.backend() == "tensorflow"
    tmp = tmp_path_factory.mktemp("steps")
    dense, as_dense, as_sparse = _data()
    mask, rows = window_rows(*WINDOWS, CONFIG["window_size"])
    y = np.where(mask, as_dense.labels[np.where(mask, rows, 0)], 0).astype(np.int32)
    initial = new_network(TrainingConfig(**CONFIG), WIDTH).get_weights()
    indptr, indices, values = as_sparse.features.csr
    np.savez(tmp / "inputs.npz", dense=dense, indptr=indptr, indices=indices, values=values, labels=as_dense.labels,
             rows=rows, mask=mask, y=y, width=WIDTH)
    (tmp / "weights.npz").write_bytes(weights_to_bytes(initial))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run(
        [sys.executable, "-c", JAX_SIDE, str(tmp / "inputs.npz"), json.dumps(CONFIG), str(tmp / "weights.npz"),
         str(tmp / "out.npz"), str(STEPS)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(tmp / "out.npz") as out:
        keys = [k.split("/")[0] for k in out.files]
        ranks = {key: [out[f"{key}/{i}"] for i in range(keys.count(key))] for key in set(keys)}
    return {
        "ranks": ranks,
        "dense": _driver_steps(as_dense, rows, mask, y, sparse=False),
        "sparse": _driver_steps(as_sparse, rows, mask, y, sparse=True),
        "initial": initial,
    }


def _same(a: list[np.ndarray], b: list[np.ndarray], atol: float = 2e-5) -> None:
    assert len(a) == len(b)
    for x, z in zip(a, b):
        np.testing.assert_allclose(x, z, atol=atol)


@pytest.mark.parametrize("kind, driver", [("dense", "dense"), ("gather", "sparse"), ("sparse-dense", "sparse")])
def test_two_ranks_with_half_a_batch_each_step_as_the_driver_does_on_the_whole_batch(steps, kind, driver):
    zero, one = steps["ranks"][f"{kind}_0"], steps["ranks"][f"{kind}_1"]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(zero, one))  # the ranks hold the same bits
    assert any(not np.allclose(a, b) for a, b in zip(zero, steps["initial"]))  # and they trained
    _same(zero, steps[driver])


@pytest.mark.parametrize("kind, driver", [("one-dense", "dense"), ("one-sparse", "sparse")])
def test_one_rank_exchanges_nothing_and_steps_as_the_driver_does(steps, kind, driver):
    if kind == "one-sparse":
        local, columns, values = steps["ranks"]["one-sparse_layout"][0]
        # The lazy Adam over its own (distinct) columns, padded to the smallest size that holds the batch.
        assert local and (columns, values) == (512, 512)
    _same(steps["ranks"][f"{kind}_0"], steps[driver])


def test_every_step_runs_the_host_work_it_is_given_once_whatever_its_exchange(steps):
    kinds = [f"{k}_{r}" for k in ("dense", "gather", "sparse-dense") for r in (0, 1)] + ["one-dense_0", "one-sparse_0"]
    assert {k: int(steps["ranks"][f"{k}_meanwhile"][0][0]) for k in kinds} == dict.fromkeys(kinds, STEPS)


def test_typical_sizes_hold_most_batches_and_the_bound_holds_every_batch():
    from conftest import sparse_rows

    from skol_spark.fit.distributed.sparse_steps import sparse_bounds, typical_sizes
    from skol_spark.fit.sparse_training import row_sparse_batch

    _, csr = sparse_rows(3000, 5000, 0.01, seed=4)
    data = TrainingData(FeatureRows(np.arange(3000), 5000, csr=csr), np.zeros(3000, np.int32), np.array([3000]))
    starts, lengths = np.arange(0, 3000, 50), np.full(60, 50)
    sizes = typical_sizes(data, starts, lengths, 8)
    bound = sparse_bounds(data, starts, lengths, 8)
    assert sizes == sorted(sizes) and all(v % 256 == 0 and c % 256 == 0 for v, c in sizes)
    assert sizes[-1][0] <= bound[0] and sizes[-1][1] <= bound[1] and sizes[0] < bound
    rng = np.random.default_rng(9)
    fits = []
    for _ in range(100):  # fresh batches, not the sample's
        mask, rows = window_rows(*(a[rng.choice(60, 8, replace=False)] for a in (starts, lengths)), 50)
        b = row_sparse_batch(data, rows, mask)
        assert len(b.values) <= bound[0] and len(b.columns) <= bound[1]
        fits.append(len(b.values) <= sizes[0][0] and len(b.columns) <= sizes[0][1])
    assert np.mean(fits) >= 0.3  # the median size holds a good share of batches


def test_sparse_rows_update_only_the_kernel_rows_a_batch_used(steps):
    kernel_before, kernel_after = steps["initial"][0], steps["ranks"]["gather_0"][0]
    changed = np.flatnonzero(np.any(kernel_before != kernel_after, axis=1))
    _, as_dense, _ = _data()
    mask, rows = window_rows(*WINDOWS, CONFIG["window_size"])
    used = np.flatnonzero(as_dense.features.dense[rows[mask]].any(axis=0))
    assert set(changed) <= set(used) and len(changed) > 0
    assert len(used) < WIDTH  # some rows of the kernel were not used, and kept their values
