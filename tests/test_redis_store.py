"""Models in Redis, against a real redis-server started for the session."""

import json
import threading

import keras
import pytest
import redis
from conftest import assert_same_predictions, parts_of, predictions

from skol_spark import BiLSTMClassificationModel
from skol_spark.errors import (
    ChecksumMismatchError,
    CorruptModelError,
    ModelExistsError,
    ModelNotFoundError,
    StoreUnavailableError,
    UnsafeModelError,
    WrongModelClassError,
)


@pytest.fixture()
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.flushdb()


@pytest.mark.core
@pytest.mark.connect
def test_round_trip_by_url_and_by_client(fitted, test_df, redis_url, client):
    fitted.saveToRedis(redis_url, "skol:model")
    by_url = BiLSTMClassificationModel.loadFromRedis(redis_url, "skol:model")
    by_client = BiLSTMClassificationModel.loadFromRedis(client, "skol:model")
    assert by_url.uid == by_client.uid == fitted.uid
    assert by_url.getModelWeights() == fitted.getModelWeights()
    assert_same_predictions(predictions(by_url, test_df), predictions(fitted, test_df))


def test_value_is_the_same_metadata_and_body_as_on_disk(fitted, client):
    fitted.saveToRedis(client, "skol:parts")
    stored = client.hgetall("skol:parts")
    metadata, body = parts_of(fitted)
    assert json.loads(stored[b"metadata"])["paramMap"] == json.loads(metadata)["paramMap"]
    assert json.loads(stored[b"metadata"])["skolSpark"] == json.loads(metadata)["skolSpark"]
    assert stored[b"chunk:0"] == body and int(stored[b"chunks"]) == 1


def test_large_bodies_are_chunked(fitted, client):
    body = fitted.weightsBody()
    fitted.saveToRedis(client, "skol:chunked", chunkBytes=1000)
    assert int(client.hget("skol:chunked", "chunks")) == -(-len(body) // 1000)
    assert BiLSTMClassificationModel.loadFromRedis(client, "skol:chunked").weightsBody() == body


def test_ttl_and_overwrite_guard(fitted, client):
    fitted.saveToRedis(client, "skol:ttl", ttl=30)
    assert 0 < client.ttl("skol:ttl") <= 30
    fitted.saveToRedis(client, "skol:ttl")  # overwrite without ttl: persists
    assert client.ttl("skol:ttl") == -1
    with pytest.raises(ModelExistsError, match="already exists under key 'skol:ttl'.*overwrite=True"):
        fitted.saveToRedis(client, "skol:ttl", overwrite=False)
    assert BiLSTMClassificationModel.loadFromRedis(client, "skol:ttl").uid == fitted.uid
    assert [k for k in client.scan_iter() if b"writing" in k] == []  # no staging key left behind
    fitted.saveToRedis(client, "skol:fresh", overwrite=False)
    assert client.exists("skol:fresh")
    with pytest.raises(ValueError, match="ttl"):
        fitted.saveToRedis(client, "skol:x", ttl=0)


def test_password_protected_server(fitted, redis_password_url):
    with_password, without = redis_password_url
    fitted.saveToRedis(with_password, "skol:auth")
    assert BiLSTMClassificationModel.loadFromRedis(with_password, "skol:auth").uid == fitted.uid
    with pytest.raises(StoreUnavailableError, match="key 'skol:auth'") as info:
        BiLSTMClassificationModel.loadFromRedis(without, "skol:auth")
    assert "s3cret" not in str(info.value)


def test_missing_key(client):
    with pytest.raises(ModelNotFoundError, match="No model under key 'skol:nothing' in redis at 127.0.0.1"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:nothing")


def test_wrong_class(fitted, client):
    metadata, body = parts_of(fitted)
    other = json.loads(metadata)
    other["class"] = "pyspark.ml.classification.LogisticRegressionModel"
    client.hset("skol:other", mapping={"metadata": json.dumps(other), "chunks": 1, "chunk:0": body})
    with pytest.raises(
        WrongModelClassError,
        match="Redis key 'skol:other' .* written by pyspark.ml.classification.LogisticRegressionModel, "
        "not skol_spark.estimator.BiLSTMClassificationModel",
    ):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:other")


def test_not_a_model(client):
    client.set("skol:string", "hello")
    with pytest.raises(CorruptModelError, match="'skol:string' .* holds a Redis string, not a skol_spark model"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:string")
    client.hset("skol:hash", mapping={"x": 1})
    with pytest.raises(CorruptModelError, match="'skol:hash' .* no metadata or chunk count"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:hash")
    client.hset("skol:badmeta", mapping={"metadata": "{oops", "chunks": 0})
    with pytest.raises(CorruptModelError, match="'skol:badmeta' .* not Spark ML model metadata"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:badmeta")


def test_truncated_and_corrupt_payloads(fitted, client):
    fitted.saveToRedis(client, "skol:cut", chunkBytes=1000)
    client.hdel("skol:cut", "chunk:3")
    with pytest.raises(CorruptModelError, match="'skol:cut' .* is truncated: 1 of .* chunks are missing \\(first missing: chunk:3\\)"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:cut")
    fitted.saveToRedis(client, "skol:short", chunkBytes=1000)
    client.hset("skol:short", "chunk:0", b"x" * 10)
    with pytest.raises(CorruptModelError, match="'skol:short' .* truncated or padded"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:short")
    fitted.saveToRedis(client, "skol:flip")
    body = bytearray(client.hget("skol:flip", "chunk:0"))
    body[100] ^= 0x01
    client.hset("skol:flip", "chunk:0", bytes(body))
    with pytest.raises(ChecksumMismatchError, match="'skol:flip' .* SHA-256 .* does not match"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:flip")


def test_crafted_lambda_payload_is_refused_not_executed(fitted, client, tmp_path):
    """A payload whose architecture smuggles code must not run it."""
    marker = tmp_path / "executed"
    inputs = keras.Input(shape=(fitted.getWindowSize(), fitted.getNumFeatures()))
    outputs = keras.layers.Lambda(lambda t: t)(inputs)
    evil = keras.Model(inputs, outputs)
    metadata, body = parts_of(fitted)
    crafted = json.loads(metadata)
    crafted["paramMap"]["modelJson"] = evil.to_json().replace("lambda", f"open('{marker}','w')")
    client.hset("skol:evil", mapping={"metadata": json.dumps(crafted), "chunks": 1, "chunk:0": body})
    with pytest.raises(UnsafeModelError, match="'skol:evil' .* safe mode refuses"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:evil")
    assert not marker.exists()
    unknown = json.loads(metadata)
    unknown["paramMap"]["modelJson"] = unknown["paramMap"]["modelJson"].replace('"LSTM"', '"NoSuchLayer"')
    client.hset("skol:unknown", mapping={"metadata": json.dumps(unknown), "chunks": 1, "chunk:0": body})
    with pytest.raises(CorruptModelError, match="'skol:unknown' .* cannot be rebuilt"):
        BiLSTMClassificationModel.loadFromRedis(client, "skol:unknown")


def test_unreachable_server_on_save_and_load(fitted):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    with pytest.raises(StoreUnavailableError, match=rf"save model under key 'skol:down'.*127.0.0.1:{port}\S* is unreachable"):
        fitted.saveToRedis(url, "skol:down")
    with pytest.raises(StoreUnavailableError, match=rf"load model under key 'skol:down'.*127.0.0.1:{port}\S* is unreachable"):
        BiLSTMClassificationModel.loadFromRedis(url, "skol:down")
    with pytest.raises(ValueError, match="redis://, rediss://"):
        BiLSTMClassificationModel.loadFromRedis("http://127.0.0.1/", "k")


def test_tls_server_round_trip(fitted, redis_tls_url):
    tls_url, plain_url = redis_tls_url
    fitted.saveToRedis(tls_url, "skol:tls")
    assert BiLSTMClassificationModel.loadFromRedis(tls_url, "skol:tls").getModelWeights() == fitted.getModelWeights()
    # Without TLS the same port answers nothing a client can read.
    with pytest.raises(StoreUnavailableError, match="key 'skol:tls'"):
        BiLSTMClassificationModel.loadFromRedis(plain_url, "skol:tls")


def test_tls_urls_build_tls_connections():
    from skol_spark.stores.redis_store import redis_client

    client, where = redis_client("rediss://:pw@127.0.0.1:6390/2?ssl_cert_reqs=none")
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert where == "rediss://:***@127.0.0.1:6390/2?ssl_cert_reqs=none"


def test_readers_never_see_a_half_written_model(fitted, spark, train_df, tiny_params, client):
    """Concurrent overwrites with two different models: every read is one of them, whole."""
    from skol_spark import BiLSTMClassifier

    other = BiLSTMClassifier(**dict(tiny_params, epochs=1, seed=99)).fit(train_df)
    bodies = {fitted.weightsBody(), other.weightsBody()}
    fitted.saveToRedis(client, "skol:race", chunkBytes=500)
    errors, stop = [], threading.Event()

    def write():
        for i in range(20):
            (other if i % 2 else fitted).saveToRedis(client, "skol:race", chunkBytes=500)
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    while not stop.is_set() or reads < 5:
        try:
            loaded = BiLSTMClassificationModel.loadFromRedis(client, "skol:race")
            assert loaded.weightsBody() in bodies
            reads += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            break
    writer.join()
    assert not errors and reads >= 5
