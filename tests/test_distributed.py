"""numWorkers > 1: data-parallel training on the executors (skol_spark.fit.distributed.stage).

Real local Spark (``local[2]``: two barrier tasks) and real JAX processes, one
per task, training together over their TCP ring; tiny networks. Each
distributed fit costs a fixed ~10-60 s here (two JAX processes start and
compile on 2 cores, less once XLA's compilation cache holds the programs), so
the file fits as few times as it can.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time

import numpy as np
import psutil
import pytest
from conftest import assert_same_predictions, macro_f1_of, predictions, skol_log_messages

from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier
from skol_spark.errors import DistributedTrainingError, ModelRebuildError

if importlib.util.find_spec("jax") is None:
    if os.environ.get("CI"):
        raise RuntimeError("jax is not installed; the test extra (setup.cfg) should have installed it")
    pytest.skip("jax is not installed (pip install -e '.[test]')", allow_module_level=True)

EPOCHS = 6


@pytest.fixture(scope="module")
def parallel(train_df, tiny_params):
    """One numWorkers=2 fit, with the driver's log lines."""
    with skol_log_messages() as messages:
        params = {**tiny_params, "epochs": EPOCHS}
        model = BiLSTMClassifier(numWorkers=2, validationFraction=0.2, **params).fit(train_df)
    return model, messages


@pytest.mark.slow
def test_ranks_hold_identical_weights_after_every_step(parallel):
    _, messages = parallel
    [line] = [m for m in messages if "weight digests" in m]
    steps = int(line.split("after each of ")[1].split()[0])
    assert "of all 2 ranks agree" in line
    assert steps >= EPOCHS  # at least one step per epoch was compared


def test_diverged_ranks_are_an_error():
    from skol_spark.fit.distributed.stage import _check_ranks_agree

    _check_ranks_agree(np.array([[5, 6, 7], [5, 6, 7]]))
    with pytest.raises(DistributedTrainingError, match=r"differ after step 3 .*not synchronised"):
        _check_ranks_agree(np.array([[5, 6, 7], [5, 6, 8]]))


@pytest.mark.slow
def test_loss_falls_and_every_epoch_is_in_history_and_on_the_driver_log(parallel):
    model, messages = parallel
    history = model.history
    assert len(history["loss"]) == EPOCHS
    assert history["loss"][-1] < history["loss"][0]
    assert len(history["val_macro_f1"]) == len(history["val_loss"]) == EPOCHS
    assert all(0 <= f1 <= 1 for f1 in history["val_macro_f1"])
    epochs = [i for i, m in enumerate(messages) if m.startswith("epoch ")]
    assert [messages[i].split()[1] for i in epochs] == [f"{e}/{EPOCHS}" for e in range(1, EPOCHS + 1)]
    [summary] = [i for i, m in enumerate(messages) if "weight digests" in m]
    assert max(epochs) < summary  # logged live, while the stage ran (the rest would follow the summary)


@pytest.mark.slow
def test_macro_f1_is_close_to_the_driver_fit(parallel, train_df, test_df, tiny_params):
    model, _ = parallel
    on_driver = BiLSTMClassifier(validationFraction=0.2, **{**tiny_params, "epochs": EPOCHS}).fit(train_df)
    assert model.getNumWorkers() == 2 and on_driver.getNumWorkers() == 1
    assert abs(macro_f1_of(model, test_df) - macro_f1_of(on_driver, test_df)) <= 0.03
    assert model.getClassWeightsUsed() == pytest.approx(on_driver.getClassWeightsUsed())


@pytest.mark.slow
def test_saves_loads_and_predicts_like_any_other_model(parallel, test_df, tmp_path):
    model, _ = parallel
    model.write().save(str(tmp_path / "model"))
    loaded = BiLSTMClassificationModel.load(str(tmp_path / "model"))
    assert loaded.getNumWorkers() == 2 and loaded.trainedNetwork.digest == model.trainedNetwork.digest
    assert_same_predictions(predictions(model, test_df), predictions(loaded, test_df))


@pytest.mark.slow
def test_weights_move_from_jax_to_tensorflow_through_set_weights(parallel, test_df):
    """The fit already checks rank 0's JAX probabilities against the TensorFlow rebuild; here the
    model's network (rebuilt from JSON on TensorFlow) labels whole documents as transform does."""
    import keras

    from skol_spark.core.windows import predict_block

    model, _ = parallel
    network = model.getKerasModel()
    assert keras.backend.backend() == "tensorflow"
    rows = test_df.orderBy("doc_id", "line_number").select("doc_id", "features").collect()
    features = np.array([r.features.toArray() for r in rows], dtype=np.float32)
    _, lengths = np.unique([r.doc_id for r in rows], return_counts=True)
    expected = predict_block(
        lambda x, m: network([x, m], training=False), features, lengths, 16, 16, 64, model.numClasses
    )
    got = predictions(model, test_df)
    keys = sorted(got)
    assert np.allclose(np.array([got[k] for k in keys]), expected, atol=1e-5)


@pytest.mark.slow
def test_an_ensemble_with_early_stopping_trains_data_parallel_and_warm_starts_another(train_df, test_df, tiny_params):
    """ensembleSize, earlyStoppingPatience, validationFraction and initialModel with numWorkers=2."""
    params = {**tiny_params, "embeddingSize": 4, "ensembleSize": 2, "validationFraction": 0.2}
    ensemble = BiLSTMClassifier(numWorkers=2, earlyStoppingPatience=1, **{**params, "epochs": 8}).fit(train_df)
    history = ensemble.history
    assert ensemble.getEnsembleSize() == 2 and ensemble.getNumWorkers() == 2
    assert len(history["best_epoch"]) == 2 and "ensemble_val_macro_f1" in history
    for prefix, best in zip(["", "member_1/"], history["best_epoch"]):
        epochs = len(history[f"{prefix}val_macro_f1"])
        scores = history[f"{prefix}val_macro_f1"]
        assert scores[int(best) - 1] == max(scores)  # the best epoch is the first with the best score
        assert epochs == 8 or epochs == best + 1  # ran to the end, or stopped one epoch after the best
    assert 0 <= history["ensemble_val_macro_f1"][0] <= 1
    assert macro_f1_of(ensemble, test_df) > 0.3
    warm = BiLSTMClassifier(numWorkers=2, initialModel=ensemble, **{**params, "epochs": 1}).fit(train_df)
    assert warm.history["loss"][0] < history["loss"][0]  # started from the trained weights
    assert warm.history["member_1/loss"][0] < history["member_1/loss"][0]


@pytest.mark.slow
def test_sparse_rows_train_with_row_sparse_steps(spark, train_df, tiny_params):
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.ml.linalg import SparseVector, VectorUDT
    from pyspark.sql import functions as F

    wide = F.udf(
        lambda v: SparseVector(1000, {i * 97 % 1000: float(x) for i, x in enumerate(v) if x}), VectorUDT()
    )
    sparse = train_df.withColumn("features", wide(vector_to_array("features")))
    with skol_log_messages() as messages:
        model = BiLSTMClassifier(numWorkers=2, embeddingSize=4, **{**tiny_params, "epochs": 2}).fit(sparse)
    assert model.getNumFeatures() == 1000
    [summary] = [m for m in messages if "weight digests of all 2 ranks agree" in m]
    assert "row-sparse steps" in summary and "kernel rows exchanged by all-gather" in summary, summary
    dense_again = sparse.withColumn("features", array_to_vector(vector_to_array("features")))
    assert model.transform(sparse).count() == model.transform(dense_again).count() == train_df.count()


def test_a_rebuild_that_predicts_differently_is_refused():
    import io

    from skol_spark.fit.distributed.stage import check_rebuild
    from skol_spark.nn.network import build_network
    from skol_spark.nn.trained_network import TrainedNetwork

    network = build_network(4, 3, 2, hidden_size=2, num_layers=1, dropout=0.0, seed=1)
    x, mask = np.ones((1, 4, 3), np.float32), np.ones((1, 4), bool)
    probe = io.BytesIO()
    np.savez(probe, x=x, mask=mask, probs=np.full((1, 4, 2), 0.99, np.float32))
    with pytest.raises(ModelRebuildError, match="predicts differently once rebuilt on tensorflow"):
        check_rebuild(TrainedNetwork.from_keras(network), probe.getvalue())


def test_a_rank_that_lost_its_peer_says_so_and_a_rank_with_its_own_error_does_not():
    """The rank whose collective failed because another rank went away defers to that rank's error."""
    from skol_spark.errors import InvalidRowError
    from skol_spark.fit.distributed.worker import PeerLostError, _lost_a_peer

    try:
        try:
            raise RuntimeError("Unable to initialize backend 'cpu': UNAVAILABLE: Socket closed")
        except RuntimeError as cause:
            raise ValueError("while agreeing on class counts") from cause
    except ValueError as chained:
        assert _lost_a_peer(chained)
    assert _lost_a_peer(PeerLostError("an all-gather with the other ranks failed"))
    assert not _lost_a_peer(InvalidRowError("Invalid row in column 'features': null features"))
    assert not _lost_a_peer(MemoryError())


def _worker_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if "skol_spark.fit.distributed.worker" in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


@pytest.mark.connect
@pytest.mark.slow
def test_a_failed_worker_fails_the_fit_with_its_error_and_leaves_no_process(spark, train_df, tiny_params):
    from pyspark.sql import functions as F

    # Whole documents go to one worker each: a null feature row in one document fails one worker only.
    broken = train_df.withColumn(
        "features",
        F.when((F.col("doc_id") == "doc-00003") & (F.col("line_number") == 5), F.lit(None)).otherwise(
            F.col("features")
        ),
    )
    with pytest.raises(
        DistributedTrainingError,
        match=r"(?s)Worker [01] of 2 failed: InvalidRowError: .*'features'.*'doc-00003', line_number=5",
    ):
        BiLSTMClassifier(numWorkers=2, **tiny_params).fit(broken)
    deadline = time.monotonic() + 30
    while _worker_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _worker_processes()


@pytest.mark.slow
def test_a_killed_worker_process_fails_the_fit(spark, train_df, tiny_params):
    """SIGKILL rank 1's JAX process mid-fit: the fit fails naming it, and no worker process is left."""
    import signal
    import threading

    outcome = {}

    def fit() -> None:
        try:
            outcome["model"] = BiLSTMClassifier(numWorkers=2, **{**tiny_params, "epochs": 200}).fit(train_df)
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    thread = threading.Thread(target=fit)
    thread.start()
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline and thread.is_alive():
        ranks = {("skol-spark-rank1-" in " ".join(p.cmdline())): p for p in _worker_processes()}
        if len(ranks) == 2:
            victim = ranks[True]
        time.sleep(0.2)
    assert victim is not None, outcome
    time.sleep(3)
    victim.send_signal(signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), DistributedTrainingError), outcome
    assert re.search(r"Worker 1 of 2 failed: the process ended with code -9", str(outcome["error"])), outcome
    deadline = time.monotonic() + 30
    while _worker_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _worker_processes()


def test_a_rank_sizes_xlas_thread_pools_to_its_tasks_cores(monkeypatch):
    from skol_spark.fit.distributed.stage import child_env

    monkeypatch.delenv("PJRT_NPROC", raising=False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    one = child_env(cpus=1)
    assert (one["PJRT_NPROC"], one["XLA_FLAGS"]) == ("1", "--xla_cpu_multi_thread_eigen=false")
    assert one["KERAS_BACKEND"] == "jax"
    four = child_env(cpus=4)
    assert four["PJRT_NPROC"] == "4" and "XLA_FLAGS" not in four
    monkeypatch.setenv("PJRT_NPROC", "3")  # the user's own setting wins
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    mine = child_env(cpus=1)
    assert (mine["PJRT_NPROC"], mine["XLA_FLAGS"]) == ("3", "--xla_dump_to=/tmp/x")


def test_a_ranks_next_batch_is_built_during_the_exchange_and_timed_apart_from_it(monkeypatch):
    from skol_spark.fit.distributed import rank

    class Batches:  # RankBatches' interface: batch i of an epoch of 3
        steps, built = 3, []

        def __getitem__(self, i):
            self.built.append(i)
            return f"batch {i}"

    upcoming = rank._NextBatch(Batches())
    assert upcoming.builder(3) is None  # nothing past the epoch's last batch
    upcoming.builder(1)()
    assert [upcoming.take(0), upcoming.take(1), upcoming.take(2)] == ["batch 0", "batch 1", "batch 2"]
    assert Batches.built == [1, 0, 2]  # batch 1 was built ahead, once

    now = [10.0]
    monkeypatch.setattr(rank.time, "perf_counter", lambda: now[0])

    class Ready:
        def block_until_ready(self):
            now[0] += 0.002  # the exchange itself: 2 ms

    clock = rank.Clock(0.0).start_step(timed=True)
    work = clock.aside("next batch", lambda: now.__setitem__(0, now[0] + 0.005))
    assert clock.aside("next batch", None) is None
    work()
    clock.lap("all-reduce", Ready())
    assert clock.summary()["step_ms"] == pytest.approx({"next batch": 5.0, "all-reduce": 2.0})


def test_param_errors(spark, train_df, tiny_params):
    with pytest.raises(ValueError, match=r"Expected numWorkers to be a positive integer. Received: numWorkers=0"):
        BiLSTMClassifier(numWorkers=0)
    with pytest.raises(ValueError, match=r"Expected numWorkers <= the cluster's task slots \(2"):
        BiLSTMClassifier(numWorkers=3, **tiny_params).fit(train_df)
    with pytest.raises(ValueError, match=r"Expected useGpu=False with numWorkers > 1"):
        BiLSTMClassifier(numWorkers=2, useGpu=True, **tiny_params).fit(train_df)
    with pytest.raises(ValueError, match=r"Expected outputLayer='softmax' with numWorkers > 1"):
        BiLSTMClassifier(numWorkers=2, outputLayer="crf", **tiny_params).fit(train_df)
    with pytest.raises(ValueError, match=r"Expected tuneThresholds=False with numWorkers > 1"):
        BiLSTMClassifier(numWorkers=2, tuneThresholds=True, validationFraction=0.2, **tiny_params).fit(train_df)
    with pytest.raises(ValueError, match=r"classWeights key 'Nomenclatur' is not a label"):
        BiLSTMClassifier(numWorkers=2, classWeights={"Nomenclatur": 3.0}, **tiny_params).fit(train_df)


class _PeakRSS:
    """Peak resident memory of this (driver) process while the block runs, sampled every 20 ms."""

    def __enter__(self):
        import threading

        self._me, self._stop = psutil.Process(), threading.Event()
        self.start = self.peak = self._me.memory_info().rss
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._me.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


WIDE = 2048


def _wide_documents(spark, rows: int):
    """``rows`` positions of WIDE float features in documents of 100, labelled, built in the JVM."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    i = F.col("id")
    # One higher-order expression, not WIDE column expressions: Janino cannot compile a
    # projection of 2048 sin() calls, and its interpreted fallback held both cores.
    angles = F.transform(F.sequence(F.lit(1), F.lit(WIDE)), lambda k: F.sin(i * k * 0.37))
    return spark.range(rows).select(
        (i / 100).cast("long").alias("doc_id"),
        (i % 100).cast("int").alias("line_number"),
        array_to_vector(angles).alias("features"),
        (F.abs(F.hash(i)) % 3).cast("double").alias("label"),
    )


@pytest.mark.slow
def test_driver_memory_does_not_grow_with_the_training_rows(spark, tiny_params):
    """At 4x rows a driver fit holds 3 x 3000 x 2048 x 4 bytes (74 MB) more; numWorkers=2 holds none of it."""
    params = {**tiny_params, "epochs": 1, "batchSize": 64, "embeddingSize": 4, "hiddenSize": 4}
    growth = {}
    for scale in (1, 4):
        df = _wide_documents(spark, 3000 * scale)
        with _PeakRSS() as rss:
            model = BiLSTMClassifier(numWorkers=2, labels=["a", "b", "c"], **params).fit(df)
        assert model.getNumFeatures() == WIDE
        growth[scale] = rss.peak - rss.start
    extra_rows_bytes = 3 * 3000 * WIDE * 4
    assert growth[4] - growth[1] < extra_rows_bytes / 4, growth
