"""One local Spark session for the whole run, and small shared fixtures.

The session is classic Spark unless pytest runs with ``--spark-connect``:
then it is a Spark Connect client of a local Connect server
(``SparkSession.builder.remote("local[2]")``). pyspark refuses a Connect
session while a classic one is running (and marks the whole process as
Connect once one started), so the two modes run in separate processes:
``tests/test_connect.py`` reruns the tests marked ``connect`` in a
``--spark-connect`` subprocess.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

# Spark's Python workers must run this interpreter (the system one lacks pyarrow).
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skol-annotated"


def pytest_addoption(parser):
    parser.addoption(
        "--spark-connect",
        action="store_true",
        help="run with a Spark Connect session (a local Connect server) instead of classic Spark",
    )


@pytest.fixture(scope="session")
def spark_connect(request) -> bool:
    """Whether this run's session is a Spark Connect client."""
    return bool(request.config.getoption("--spark-connect"))


@pytest.fixture(scope="session")
def spark(spark_connect):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.remote("local[2]") if spark_connect else SparkSession.builder.master("local[2]")
    session = (
        builder.appName("skol_spark-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    if not spark_connect:  # a Connect client has no SparkContext
        session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def train_df(spark):
    from skol_spark.skol.datasets import make_synthetic_documents

    return make_synthetic_documents(spark, num_docs=40, mean_length=60, num_features=8, seed=1).cache()


@pytest.fixture(scope="session")
def test_df(spark):
    from skol_spark.skol.datasets import make_synthetic_documents

    return make_synthetic_documents(spark, num_docs=12, mean_length=60, num_features=8, seed=2).cache()


# One small network: tests pass their own Params (the estimator defaults train three 64-unit networks).
TINY = dict(windowSize=16, hiddenSize=8, numLayers=1, dropout=0.0, epochs=3, learningRate=0.01, seed=3,
            ensembleSize=1, batchSize=32)


@pytest.fixture(scope="session")
def tiny_params():
    return dict(TINY)


# Set by tests/test_connect.py for its Connect run: a directory the two runs share.
CONNECT_EXCHANGE = "SKOL_SPARK_CONNECT_EXCHANGE"


@pytest.fixture(scope="session")
def fitted(train_df, tiny_params, spark_connect):
    from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier

    exchange = os.environ.get(CONNECT_EXCHANGE)
    if spark_connect and exchange:
        # The classic run's model, saved there: both modes check the same model (and a training is saved).
        return BiLSTMClassificationModel.load(os.path.join(exchange, "classic-model"))
    return BiLSTMClassifier(validationFraction=0.2, **tiny_params).fit(train_df)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(tmp_dir, *extra_args, tls=None):
    """A real redis-server on a free loopback port; returns (process, port).

    With ``tls`` (a dict of redis-py ssl options), the port speaks TLS only.
    """
    import shutil
    import subprocess
    import time

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run should have installed it")
        pytest.skip("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)")
    port = _free_port()
    ports = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    process = subprocess.Popen(
        [binary, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_dir), *extra_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    password = extra_args[extra_args.index("--requirepass") + 1] if "--requirepass" in extra_args else None
    client = redis.Redis(host="127.0.0.1", port=port, password=password, **(tls or {}))
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)
    return process, port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """URL of a redis-server started for this test session (no fakes)."""
    process, port = _start_redis(tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_password_url(tmp_path_factory):
    """A second server that requires a password: (url with password, url without)."""
    process, port = _start_redis(tmp_path_factory.mktemp("redis-auth"), "--requirepass", "s3cret-pw")
    yield f"redis://:s3cret-pw@127.0.0.1:{port}/1", f"redis://127.0.0.1:{port}/1"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_tls_url(tmp_path_factory):
    """A TLS-only server with a self-signed certificate; the rediss:// URL trusting it."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed; .ci/run should have installed it")
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    tmp = tmp_path_factory.mktemp("redis-tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    process, port = _start_redis(
        tmp,
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no",
        tls={"ssl": True, "ssl_ca_certs": str(cert)},
    )
    yield f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}", f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


def jvm_documents(spark, rows: int, doc_length: int, num_features: int = 8):
    """``rows`` rows cut into documents of ``doc_length``, built in the JVM (no Python rows)."""
    from pyspark.sql import functions as F

    i = F.col("id")
    return spark.range(rows).select(
        (i / doc_length).cast("long").alias("doc_id"),
        (i % doc_length).cast("int").alias("line_number"),
        F.array(*[F.sin(i * (0.37 * (k + 1))) for k in range(num_features)]).cast("array<float>").alias("features"),
    )


def sparse_rows(n: int, width: int, density: float, seed: int):
    """``n`` random rows with about ``density`` of their cells non-zero: the dense array and its CSR
    ``(indptr, indices, values)``, as ``FeatureRows(..., csr=...)`` takes them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dense = ((rng.random((n, width)) < density) * rng.normal(size=(n, width))).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum((dense != 0).sum(axis=1))])
    return dense, (indptr, np.nonzero(dense)[1].astype(np.int32), dense[dense != 0])


def small_model(num_features: int = 8, seed: int = 7):
    """An untrained BiLSTM (window 16, 4 units, 3 classes), wrapped without fitting."""
    from skol_spark import BiLSTMClassificationModel
    from skol_spark.nn.network import build_network

    network = build_network(16, num_features, 3, hidden_size=4, num_layers=1, dropout=0.0, seed=seed)
    return BiLSTMClassificationModel.fromKeras(network, labels=["a", "b", "c"])


def predictions(model, df):
    """{(doc_id, line_number): probability array} of a transform."""
    import numpy as np

    return {
        (r.doc_id, r.line_number): np.asarray(r.probability.toArray())
        for r in model.transform(df).select("doc_id", "line_number", "probability").collect()
    }


def assert_same_predictions(a, b):
    import numpy as np

    assert a.keys() == b.keys()
    for key in a:
        assert np.allclose(a[key], b[key], atol=1e-6), key


MODEL_CLASS = "skol_spark.estimator.BiLSTMClassificationModel"


def parts_of(model, spark_version: str = "4.0.0"):
    """(metadata, body) of a model, as every store writes them."""
    from skol_spark.stages.io import saved_stage as _saved_stage
    from skol_spark.stores.directory import model_to_parts

    return model_to_parts(_saved_stage(model), model.trainedNetwork, spark_version)


def model_of(metadata, body, source: str = "test"):
    """The model every store builds from (metadata, body), checked on the way."""
    from skol_spark import BiLSTMClassificationModel
    from skol_spark.stores.directory import model_from_parts

    stage, network = model_from_parts(metadata, body, MODEL_CLASS, source)
    return BiLSTMClassificationModel._from_saved(stage, network, source)


def python_without_skol_spark(directory):
    """An interpreter that has every package of this venv but skol_spark: a script running a link
    to this Python with ``-S`` (no site module, so no .pth files: the editable install of skol_spark
    is invisible) and the venv's site-packages on ``PYTHONPATH``. Its ``sys.executable`` is the link,
    ``directory/python3-without-skol``; returns the script, ``directory/python-without-skol``."""
    import stat
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    link = directory / "python3-without-skol"
    link.symlink_to(os.path.realpath(sys.executable))
    wrapper = directory / "python-without-skol"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        "export PYTHONPATH\n"
        f'exec "{link}" -S "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return wrapper


@contextlib.contextmanager
def skol_log_messages():
    """The INFO messages of the ``skol_spark`` logger while the block runs, as a list of strings."""
    messages: list[str] = []

    class Records(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler, log = Records(logging.INFO), logging.getLogger("skol_spark")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def macro_f1_of(model, df) -> float:
    """The macro-F1 of ``model``'s predictions on ``df``'s labels."""
    import numpy as np

    from skol_spark.core.thresholds import macro_f1

    rows = model.transform(df).select("label", "prediction").collect()
    truth = np.array([int(r.label) for r in rows])
    predicted = np.array([int(r.prediction) for r in rows])
    return macro_f1(truth, predicted, model.numClasses)[0]
