"""Faults: a Python worker killed mid-transform, Redis connections cut mid-save and
mid-load, and truncated or corrupted saved models. Real Spark, real redis-server;
the network faults come from a TCP relay that cuts real connections."""

import contextlib
import glob
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import redis
from conftest import assert_same_predictions, jvm_documents, predictions, small_model

from skol_spark import BiLSTMClassificationModel
from skol_spark.errors import CorruptModelError, ModelLoadError, StoreUnavailableError
from skol_spark.stores.redis_store import CONNECTION_RETRIES

TESTS = Path(__file__).resolve().parent


# -- a Python worker killed in the middle of a transform ---------------------------------


@pytest.mark.slow
def test_killed_python_worker_is_retried_and_output_equals_a_clean_run(spark, tmp_path):
    """tests/kill_worker_job.py SIGKILLs the worker running the network on the first
    attempt of a task, in a Spark of its own that allows a retry (local[1,2])."""
    model = small_model()
    model.write().save(str(tmp_path / "model"))
    out = tmp_path / "faulty.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    job = subprocess.run(
        [sys.executable, str(TESTS / "kill_worker_job.py"), str(tmp_path / "model"), str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["killed"]) == 1  # exactly one worker had TensorFlow loaded: ours

    columns = ["doc_id", "line_number", "prediction", "probability"]
    clean = sorted([r[0], r[1], r[2], *r[3]] for r in model.transform(jvm_documents(spark, 4000, 2000)).select(columns).collect())
    faulty = sorted(result["rows"])
    assert len(faulty) == len(clean) == 4000
    assert [r[:2] for r in faulty] == [r[:2] for r in clean]
    np.testing.assert_allclose(np.array(faulty)[:, 2:], np.array(clean)[:, 2:], atol=1e-6)


# -- Redis connections cut mid-save and mid-load ----------------------------------------


class CuttingRelay:
    """A TCP relay to a real redis-server that cuts connections on a rule.

    ``cut(direction, data, connection)`` sees each chunk going ``"request"``
    (client to server) or ``"reply"``; returning a number forwards that many
    bytes of the chunk and then closes both sides, returning None forwards it.
    """

    def __init__(self, port: int, cut):
        self.target, self.cut, self.connections, self.cuts = port, cut, 0, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            index, self.connections = self.connections, self.connections + 1
            for src, dst, direction in ((client, server, "request"), (server, client, "reply")):
                threading.Thread(
                    target=self._pump, args=(src, dst, direction, index, (client, server)), daemon=True
                ).start()

    def _pump(self, src, dst, direction, index, pair):
        try:
            while data := src.recv(1 << 16):
                forward = self.cut(direction, data, index)
                if forward is not None:
                    dst.sendall(data[:forward])
                    self.cuts += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in pair:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self):
        self.listener.close()


@pytest.fixture()
def direct(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.flushdb()


def _relay(direct, cut):
    return CuttingRelay(direct.connection_pool.connection_kwargs["port"], cut)


def test_save_cut_mid_transaction_keeps_the_previous_model(fitted, test_df, direct):
    fitted.saveToRedis(direct, "skol:kept")
    other = small_model(seed=42)

    def in_the_middle_of_hset(direction, data, _):
        if direction == "request" and b"HSET" in data:
            return data.index(b"HSET") + 20  # MULTI and part of the first HSET reach the server
        return None

    relay = _relay(direct, in_the_middle_of_hset)
    with pytest.raises(StoreUnavailableError, match="save model under key 'skol:kept'.*dropped the connection.*unchanged"):
        other.saveToRedis(relay.url, "skol:kept")
    relay.close()
    assert relay.connections == 1 + CONNECTION_RETRIES and relay.cuts == relay.connections
    assert direct.keys("*skol_spark-writing*") == []  # no EXEC reached the server: nothing staged
    loaded = BiLSTMClassificationModel.loadFromRedis(direct, "skol:kept")
    assert loaded.weightsBody() == fitted.weightsBody()
    assert_same_predictions(predictions(loaded, test_df), predictions(fitted, test_df))


def test_save_cut_before_the_rename_leaves_a_staging_key_that_expires(fitted, direct):
    fitted.saveToRedis(direct, "skol:stale")
    before = direct.hgetall("skol:stale")
    relay = _relay(direct, lambda direction, data, _: 0 if direction == "request" and b"RENAME" in data else None)
    with pytest.raises(StoreUnavailableError, match="save model under key 'skol:stale'.*unchanged"):
        fitted.saveToRedis(relay.url, "skol:stale", chunkBytes=1000)
    relay.close()
    assert direct.hgetall("skol:stale") == before
    (staging,) = direct.keys("{skol:stale}:skol_spark-writing:*")
    assert 0 < direct.ttl(staging) <= 3600


def test_load_retries_a_connection_dropped_mid_reply(fitted, direct):
    fitted.saveToRedis(direct, "skol:retry", chunkBytes=1000)

    def first_big_reply_cut_in_half(direction, data, connection):
        return len(data) // 2 if direction == "reply" and connection == 0 and len(data) > 500 else None

    relay = _relay(direct, first_big_reply_cut_in_half)
    loaded = BiLSTMClassificationModel.loadFromRedis(relay.url, "skol:retry")
    relay.close()
    assert relay.cuts == 1 and relay.connections == 2
    assert loaded.weightsBody() == fitted.weightsBody()


def test_load_dropped_on_every_attempt_is_a_clear_error_never_a_partial_model(fitted, direct):
    fitted.saveToRedis(direct, "skol:dropped", chunkBytes=1000)
    relay = _relay(direct, lambda direction, data, _: len(data) // 2 if direction == "reply" and len(data) > 500 else None)
    with pytest.raises(StoreUnavailableError, match="load model under key 'skol:dropped'.*dropped the connection"):
        BiLSTMClassificationModel.loadFromRedis(relay.url, "skol:dropped")
    relay.close()
    assert relay.connections == 1 + CONNECTION_RETRIES


def test_chunk_count_that_is_not_a_number(fitted, direct):
    from conftest import parts_of

    metadata, body = parts_of(fitted)
    direct.hset("skol:count", mapping={"metadata": metadata, "chunks": "many", "chunk:0": body})
    with pytest.raises(CorruptModelError, match="'skol:count'.*chunk count b'many' is not a number"):
        BiLSTMClassificationModel.loadFromRedis(direct, "skol:count")


# -- truncated or corrupted model directories -------------------------------------------


@pytest.fixture()
def saved(fitted, tmp_path):
    path = tmp_path / "model"
    fitted.write().save(str(path))
    return path


def _part(path: Path, part: str) -> Path:
    (file,) = [Path(p) for p in glob.glob(str(path / part / "part-*"))]
    return file


def _drop_checksums(path: Path, part: str) -> None:
    for crc in glob.glob(str(path / part / ".*.crc")):
        os.remove(crc)


def test_missing_weights_directory(saved):
    import shutil

    shutil.rmtree(saved / "weights")
    with pytest.raises(CorruptModelError, match=r"'.*model': cannot read the weights body"):
        BiLSTMClassificationModel.load(str(saved))


def _remove(part: Path) -> None:
    os.remove(part)


def _truncate(part: Path) -> None:
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_remove, _truncate], ids=["missing", "truncated"])
def test_missing_or_truncated_weights_part_file(saved, damage):
    damage(_part(saved, "weights"))
    _drop_checksums(saved, "weights")
    with pytest.raises(CorruptModelError, match=r"'.*model': cannot read the weights body"):
        BiLSTMClassificationModel.load(str(saved))


def test_corrupted_metadata_json(saved):
    part = _part(saved, "metadata")
    text = part.read_text()
    part.write_text(text[: len(text) // 2] + "\n")
    _drop_checksums(saved, "metadata")
    with pytest.raises(CorruptModelError, match="the metadata is not Spark ML model metadata"):
        BiLSTMClassificationModel.load(str(saved))


def test_missing_metadata(saved):
    import shutil

    shutil.rmtree(saved / "metadata")
    with pytest.raises(ModelLoadError, match=r"cannot read .*metadata.*Is this a saved skol_spark model directory"):
        BiLSTMClassificationModel.load(str(saved))


@pytest.mark.parametrize(
    "param, value, match",
    [
        ("numFeatures", 9, r"metadata's numFeatures \(9\) does not match the network, which has 8 input features"),
        ("labels", ["x", "y"], r"metadata's labels \(\['x', 'y'\]\) does not match the network, which has 3 output classes"),
        ("windowSize", 17, r"metadata's windowSize \(17\) does not match the network, which has 16 positions"),
    ],
)
def test_metadata_params_that_contradict_the_network(saved, param, value, match):
    part = _part(saved, "metadata")
    metadata = json.loads(part.read_text())
    metadata["paramMap"][param] = value
    part.write_text(json.dumps(metadata) + "\n")
    _drop_checksums(saved, "metadata")
    with pytest.raises(CorruptModelError, match=match):
        BiLSTMClassificationModel.load(str(saved))
