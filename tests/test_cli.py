"""The train / predict / evaluate commands, the spark-submit job file, and their errors.

In-process tests run ``cli.main`` on the session ``spark`` fixture; the error
tests run ``python -m skol_spark`` in a subprocess and stop before Spark
starts; one test runs pyspark's own ``bin/spark-submit``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _free_port

from skol_spark.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--epochs", "1", "--window-size", "8", "--hidden-size", "4", "--num-layers", "1",
             "--dropout", "0", "--batch-size", "8", "--seed", "3", "--ensemble-size", "1"]

BLOCKS = {
    "Nomenclature": "Agaricus minor{i} sp. nov. Mycotaxon {i}: 12 (1990).",
    "Description": "Pileus {i} mm broad, convex, brown; lamellae free, crowded.",
    "Misc-exposition": "We thank the curators of herbarium {i} for loans of material.",
}


def _env():
    """Subprocess environment: this checkout first on the path, Spark workers on this Python."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable}


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "skol_spark", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=120)


def _write_yedda(root: Path, docs: int = 4) -> Path:
    order = ["Misc-exposition", "Nomenclature", "Description", "Description", "Misc-exposition"]
    for d in range(docs):
        text = "\n".join(f"[@{BLOCKS[label].format(i=d * 10 + i)}#{label}*]" for i, label in enumerate(order * 2))
        (root / f"doc{d}.txt.ann").write_text(text + "\n", encoding="utf-8")
    return root


def _write_blocks(directory: Path, name: str, labels: list[str], i: int = 0) -> Path:
    """One YEDDA file of blocks with these labels (texts from BLOCKS, or a plain sentence)."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = [BLOCKS.get(label, "See Smith (1990) for the types of {i}.").format(i=i + n) for n, label in enumerate(labels)]
    path = directory / name
    path.write_text("\n".join(f"[@{t}#{label}*]" for t, label in zip(texts, labels)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def features_parquet(spark, tmp_path_factory):
    from skol_spark.skol.datasets import make_synthetic_documents

    path = tmp_path_factory.mktemp("cli-data") / "docs.parquet"
    make_synthetic_documents(spark, num_docs=8, mean_length=20, num_features=4, seed=5).write.parquet(str(path))
    return path


def test_features_parquet_trains_bilstm_predicts_and_evaluates_in_one_chain(spark, features_parquet, tmp_path, capsys):
    from skol_spark import BiLSTMClassificationModel

    model, out, metrics = tmp_path / "model", tmp_path / "pred", tmp_path / "m.json"
    data = ["--input", str(features_parquet)]
    code = main(["train", *data, "--model", str(model), *TINY_ARGS,
                 "+", "predict", *data, "--model", str(model), "--output", str(out),
                 "+", "evaluate", *data, "--model", str(model), "--json", str(metrics)])
    assert code == 0
    assert "trained BiLSTMClassificationModel" in capsys.readouterr().out
    loaded = BiLSTMClassificationModel.load(str(model))
    assert loaded.labels_ == ["Misc-exposition", "Nomenclature", "Description"]
    source = spark.read.parquet(str(features_parquet))
    predicted = spark.read.parquet(str(out))
    assert predicted.count() == source.count()
    assert predicted.columns == [*source.columns, "prediction", "probability", "predicted_label"]
    assert dict(predicted.dtypes)["probability"] == "array<double>"
    row = predicted.first()
    assert row.predicted_label == loaded.labels_[int(row.prediction)]
    report = json.loads(metrics.read_text())
    assert report["labels"] == loaded.labels_
    assert sum(c["support"] for c in report["per_class"].values()) == source.count()


def test_yedda_trains_text_pipeline_and_predicts_unlabelled_csv(spark, tmp_path, capsys):
    from pyspark.ml import PipelineModel

    (tmp_path / "yedda").mkdir()
    yedda = _write_yedda(tmp_path / "yedda")
    model, out = tmp_path / "pipeline", tmp_path / "pred"
    assert main(["train", "--input", str(yedda), "--model", str(model), "--num-features", "64", *TINY_ARGS]) == 0
    assert "trained PipelineModel" in capsys.readouterr().out
    pipeline = PipelineModel.load(str(model))
    kinds = [type(stage).__name__ for stage in pipeline.stages]
    assert kinds[0] == "RegexTokenizer" and "StringIndexerModel" in kinds, kinds
    # The CRF beside the BiLSTM by default, the two blended into the output columns.
    assert kinds[-3:] == ["FeatureCRFModel", "BiLSTMClassificationModel", "ProbabilityBlendModel"], kinds
    assert pipeline.stages[-2].getNumFeatures() > 64
    assert pipeline.stages[-1].labels_ == ["Description", "Misc-exposition", "Nomenclature"]  # alphabetical

    csv = tmp_path / "new.csv"
    csv.write_text('doc,pos,body\nd1,0,"Pileus 3 mm broad, ""convex"",\nbrown."\nd1,1,Agaricus sp. nov.\n')
    assert main(["predict", "--input", str(csv), "--doc-col", "doc", "--position-col", "pos",
                 "--text-col", "body", "--model", str(model), "--output", str(out)]) == 0
    rows = spark.read.parquet(str(out)).orderBy("pos").collect()
    assert [r.pos for r in rows] == [0, 1] and rows[0].body == 'Pileus 3 mm broad, "convex",\nbrown.'
    assert all(r.predicted_label in BLOCKS and len(r.probability) == 3 for r in rows)

    metrics = tmp_path / "m.json"
    assert main(["evaluate", "--input", str(yedda), "--model", str(model), "--json", str(metrics)]) == 0
    table = capsys.readouterr().out
    assert "macro-F1" in table and "Nomenclature" in table
    assert json.loads(metrics.read_text())["labels"] == ["Description", "Misc-exposition", "Nomenclature"]

    # Labels the model never saw are named, in one line, before anything is labelled.
    _write_blocks(tmp_path / "more", "extra.txt.ann", ["Bibliography", "Nomenclature", "Bibliography"])
    assert main(["evaluate", "--input", str(yedda), str(tmp_path / "more"), "--model", str(model)]) == 1
    err = capsys.readouterr().err.strip()
    assert "error: " in err and "\n" not in err, err
    assert "has labels the model was not trained on: Bibliography (2 rows). It knows Description, " in err
    assert "(--three-classes maps SKOL's labels to its three classes first)" in err


def test_bilstm_model_saves_to_and_loads_from_redis(spark, features_parquet, tmp_path, redis_url):
    from skol_spark import BiLSTMClassificationModel

    data = ["--input", str(features_parquet)]
    redis = ["--model", redis_url, "--key", "cli:model"]
    assert main(["train", *data, *redis, *TINY_ARGS, "--labels", "misc, nom, desc"]) == 0
    assert BiLSTMClassificationModel.loadFromRedis(redis_url, "cli:model").labels_ == ["misc", "nom", "desc"]
    out = tmp_path / "pred"
    assert main(["predict", *data, *redis, "--output", str(out), "--probability", "vector"]) == 0
    assert spark.read.parquet(str(out)).count() == spark.read.parquet(str(features_parquet)).count()
    # Training again onto the same key needs --overwrite.
    assert main(["train", *data, *redis, *TINY_ARGS]) == 1


def test_three_class_text_model_goes_to_redis_whole_and_evaluates_without_being_told(spark, tmp_path, redis_url,
                                                                                     capsys):
    from pyspark.ml import PipelineModel

    from skol_spark.stages.labels import MergeLabels
    from skol_spark.stages.pipeline_store import load_pipeline_from_redis

    raw = ["Misc-exposition", "Nomenclature", "Description", "Bibliography", "Page-header", "Description"]
    for volume in ("Vol1", "Vol2"):
        for d in range(2):
            _write_blocks(tmp_path / "raw" / volume, f"doc{d}.txt.ann", raw * 2, d)
    redis = ["--model", redis_url, "--key", "cli:text"]
    volumes = [str(tmp_path / "raw" / "Vol1"), str(tmp_path / "raw" / "Vol2")]
    assert main(["train", "--input", *volumes, "--three-classes", *redis, "--num-features", "64", *TINY_ARGS,
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "saved to " + redis_url + " key cli:text" in captured.out
    assert "epoch" not in captured.err and "fitting" not in captured.err  # --quiet
    stored = load_pipeline_from_redis(redis_url, "cli:text")
    assert isinstance(stored.stages[0], MergeLabels) and stored.stages[0].getInputCol() == "label"
    assert stored.stages[-1].labels_ == ["Description", "Misc-exposition", "Nomenclature"]

    # Raw labels, no --three-classes: the saved mapping applies; a glob reads both volumes.
    metrics = tmp_path / "m.json"
    assert main(["evaluate", "--input", str(tmp_path / "raw" / "Vol*"), *redis, "--json", str(metrics)]) == 0
    report = json.loads(metrics.read_text())
    assert report["labels"] == ["Description", "Misc-exposition", "Nomenclature"]
    assert report["per_class"]["Misc-exposition"]["support"] == 2 * 2 * 6  # Misc, Bibliography, Page-header
    assert sum(c["support"] for c in report["per_class"].values()) == 2 * 2 * 12

    # Unlabelled rows: predict leaves the label stages out.
    csv, out = tmp_path / "new.csv", tmp_path / "pred"
    csv.write_text("doc_id,line_number,text\nd1,0,Agaricus minor sp. nov. Mycotaxon 3: 12 (1990).\nd1,1,Pileus brown.\n")
    assert main(["predict", "--input", str(csv), *redis, "--output", str(out)]) == 0
    assert {r.predicted_label for r in spark.read.parquet(str(out)).collect()} <= set(report["labels"])

    # copy: Redis to a directory; both give the same predictions.
    copied = tmp_path / "copied"
    assert main(["copy", *redis, "--to", str(copied)]) == 0
    assert "copied PipelineModel from " + redis_url in capsys.readouterr().out
    from skol_spark.skol.datasets import read_yedda

    df, _ = read_yedda(spark, tmp_path / "raw", pattern="*.ann")
    columns = ["doc_id", "line_number", "probability"]
    got = {(r.doc_id, r.line_number): r.probability for r in stored.transform(df).select(*columns).collect()}
    again = PipelineModel.load(str(copied)).transform(df).select(*columns).collect()
    assert len(got) == len(again) == 2 * 2 * 12
    assert all(got[(r.doc_id, r.line_number)] == r.probability for r in again)


class _StopsRedisAtFirstEpoch:
    """stderr, stopping a redis-server when fit writes its first epoch line (after the pre-check)."""

    def __init__(self, stream, process):
        self.stream, self.process = stream, process

    def write(self, text):
        if "epoch 1/" in text and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def test_a_save_that_fails_after_training_keeps_the_model_and_copy_stores_it_later(
    spark, features_parquet, tmp_path, monkeypatch, capsys
):
    from conftest import _start_redis, assert_same_predictions, predictions

    from skol_spark import BiLSTMClassificationModel

    process, port = _start_redis(tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stderr", _StopsRedisAtFirstEpoch(sys.stderr, process))
    assert main(["train", "--input", str(features_parquet), "--model", url, "--key", "k", *TINY_ARGS]) == 1
    assert process.poll() is not None  # stopped between the pre-check and the save
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "error:" in line]
    assert f"error: Could not save the model to {url} key k: Redis at {url} is unavailable" in line
    kept = re.search(r"The trained model is kept in (\S+); copy it with: skol-spark copy --model (\S+) "
                     rf"--to {re.escape(url)} --to-key k$", line)
    assert kept is not None and kept.group(1) == kept.group(2), line
    assert Path(kept.group(1)).parent == tmp_path and Path(kept.group(1)).name.startswith("skol-spark-unsaved-")
    model = BiLSTMClassificationModel.load(kept.group(1))

    (tmp_path / "again").mkdir()
    process, port = _start_redis(tmp_path / "again")
    try:
        again = f"redis://127.0.0.1:{port}/0"
        assert main(["copy", "--model", kept.group(1), "--to", again, "--to-key", "k"]) == 0
        df = spark.read.parquet(str(features_parquet))
        assert_same_predictions(predictions(model, df), predictions(BiLSTMClassificationModel.loadFromRedis(again, "k"), df))
    finally:
        process.terminate()
        process.wait(timeout=10)


def _one_line_error(done, code, message):
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr


def _closed_redis():
    return f"redis://127.0.0.1:{_free_port()}/0"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """tmp_path as the working directory, holding an empty x.parquet, odd.txt, a YEDDA dir and a model dir."""
    (tmp_path / "x.parquet").write_bytes(b"")
    (tmp_path / "odd.txt").write_text("")
    (tmp_path / "existing").mkdir()
    (tmp_path / "yedda").mkdir()
    _write_yedda(tmp_path / "yedda", docs=1)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--input", "/no/such/input.csv", "--model", "m"], "Input '/no/such/input.csv' does not exist."),
        (["evaluate", "--input", "x.parquet", "--model", "/no/such/model"], "No saved model at '/no/such/model'"),
        (["train", "--input", "x.parquet", "--model", "existing"], "'existing' exists; pass --overwrite"),
        (["predict", "--input", "x.parquet", "--model", "existing", "--output", "o"],
         "No saved model at 'existing' (expected a directory with metadata/)"),
        (["train", "--input", "x.parquet", "--model", "redis://127.0.0.1:1/0"], "A Redis model destination needs --key."),
        (["evaluate", "--input", "x.parquet", "--model", "rediss://127.0.0.1:1/0"], "A Redis model source needs --key."),
        (["train", "--input", "yedda", "--model", "odd.txt/model"], "is under '/"),
        (["train", "--input", "none*.parquet", "--model", "m"], "Input 'none*.parquet' matches no file."),
        (["train", "--input", "x.parquet", "hdfs:///data/y", "--model", "m"],
         "Cannot guess the format of the remote input 'hdfs:///data/y'; pass --format."),
        (["train", "--input", "odd.txt", "--model", "m"], "Cannot tell the format of 'odd.txt'"),
        (["predict", "--input", "x.parquet", "--model", "CLOSED", "--key", "k", "--output", "o"],
         "is unavailable: Error 111"),
    ],
)
def test_documented_errors_return_1_with_one_line(in_tmp, capsys, args, message):
    args = [_closed_redis() if a == "CLOSED" else a for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m skol_spark: error: ") and "\n" not in err and message in err, err


@pytest.fixture
def bad_yedda(tmp_path, monkeypatch):
    """YEDDA directories the reader refuses, in the working directory."""
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "a.txt.ann").write_bytes("[@Pileus caf\u00e9#Description*]\n".encode("latin-1"))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt.ann").write_text("never annotated\n")
    _write_blocks(tmp_path / "unclosed", "a.txt.ann", ["Nomenclature", "Description"])
    with open(tmp_path / "unclosed" / "a.txt.ann", "a", encoding="utf-8") as file:
        file.write("[@Pileus brown, never closed\n")
    _write_blocks(tmp_path / "one-class", "a.txt.ann", ["Description"] * 3)
    _write_blocks(tmp_path / "misc-only", "a.txt.ann", ["Key", "Figure", "Bibliography", "Key"])
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "latin1"], "latin1/a.txt.ann line 1, column 13: byte 0xe9 is not UTF-8"),
        (["--input", "plain"], "plain/a.txt.ann: no annotated block."),
        (["--input", "unclosed"], "unclosed/a.txt.ann line 3: a block opened with '[@' is never closed"),
        (["--input", "one-class"], "Training needs at least two classes; one-class has only 'Description' (3 rows)."),
        (["--input", "misc-only", "--three-classes"],
         "misc-only has only 'Misc-exposition' (4 rows) after --three-classes."),
    ],
    ids=["not-utf8", "no-blocks", "unclosed", "one-class", "one-class-after-mapping"],
)
def test_yedda_input_problems_are_one_line_errors_before_fitting(spark, bad_yedda, capsys, args, message):
    assert main(["train", *args, "--model", "m"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m skol_spark: error: ") and "\n" not in err and message in err, err
    assert not (bad_yedda / "m").exists()


def test_unclosed_blocks_can_be_skipped(spark, bad_yedda):
    from skol_spark.cli.jobs import Columns, read_input

    df = read_input(spark, ["unclosed"], "yedda", Columns(), skip_unclosed=True)
    assert [r.label for r in df.orderBy("line_number").collect()] == ["Nomenclature", "Description"]


def test_several_inputs_and_globs_are_read_as_one(spark, features_parquet, tmp_path):
    from skol_spark.cli.jobs import Columns, detect_format, expand_inputs, read_input

    for volume, docs in (("Vol1", 2), ("Vol2", 1)):
        for d in range(docs):
            _write_blocks(tmp_path / "j" / volume, f"doc{d}.txt.ann", ["Nomenclature", "Description"], d)
    listed = expand_inputs([str(tmp_path / "j" / "Vol1"), str(tmp_path / "j" / "Vol2" / "doc0.txt.ann")])
    globbed = expand_inputs([str(tmp_path / "j" / "Vol*")])
    assert globbed == [str(tmp_path / "j" / "Vol1"), str(tmp_path / "j" / "Vol2")]
    assert expand_inputs([str(tmp_path / "j" / "**" / "doc0.txt.ann")]) == [  # ** spans directories
        str(tmp_path / "j" / "Vol1" / "doc0.txt.ann"), str(tmp_path / "j" / "Vol2" / "doc0.txt.ann")]
    for paths in (listed, globbed):
        assert detect_format(paths) == "yedda"
        df = read_input(spark, paths, "yedda", Columns())
        assert sorted(r.doc_id for r in df.select("doc_id").distinct().collect()) == [
            "Vol1/doc0.txt.ann", "Vol1/doc1.txt.ann", "Vol2/doc0.txt.ann",
        ]
        assert df.count() == 6
    overlapping = [str(tmp_path / "j" / "Vol1"), str(tmp_path / "j" / "Vol1" / "doc0.txt.ann")]
    assert read_input(spark, overlapping, "yedda", Columns()).count() == 4  # each file once
    twice = expand_inputs([str(features_parquet), str(features_parquet)])  # a path given twice is read once
    assert twice == [str(features_parquet)] and detect_format(twice) == "parquet"
    assert expand_inputs([str(tmp_path / "j" / "Vol*"), str(tmp_path / "j" / "Vol1")]) == globbed


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "--input", "x.parquet"], 2, "the following arguments are required: --model"),
        (["train", "--input", "x.parquet", "--model", "m", "--epochs", "two"], 2, "invalid int value: 'two'"),
        (["train", "--input", "/no/such/input.csv", "--model", "m"], 1, "Input '/no/such/input.csv' does not exist."),
        (["train", "--input", "x.parquet", "--model", "CLOSED", "--key", "k"], 1, "Redis at redis://127.0.0.1:"),
    ],
    ids=["bad-arguments", "bad-value", "missing-input", "unreachable-redis"],
)
def test_process_exits_non_zero_with_one_line_and_no_traceback(in_tmp, args, code, message):
    args = [_closed_redis() if a == "CLOSED" else a for a in args]
    _one_line_error(_run(*args, cwd=in_tmp), code, message)


def test_without_pyspark_the_spark_free_modules_import_and_the_cli_says_what_to_install(tmp_path):
    script = (
        "import sys; sys.modules['pyspark'] = None\n"  # as if pyspark were not installed
        "import skol_spark, skol_spark.skol.yedda, skol_spark.core.windows, skol_spark.transform.predict\n"
        "try:\n    skol_spark.BiLSTMClassifier\nexcept ImportError as e:\n    print(e)\n"
        "from skol_spark.cli.main import main\nsys.exit(main(['train', '--help']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert "pip install 'skol_spark[spark]'" in done.stdout and "BiLSTMClassifier" in done.stdout
    _one_line_error(done, 1, "skol_spark's Spark stages need pyspark>=3.5, which is not installed")


def test_import_skol_spark_is_light():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, skol_spark; print(sorted({'pyspark', 'keras'} & set(sys.modules)))"],
        capture_output=True, text=True, env=_env(),
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_the_stages_and_the_command_line_parser_import_without_keras():
    """TensorFlow prints its start-up lines when imported: the CLI silences them first, so nothing
    before a network is built may import it."""
    code = (
        "import sys\n"
        "import skol_spark.stages.classifier, skol_spark.stages.model, skol_spark.skol.journals\n"
        "from skol_spark.cli.main import build_parser\n"
        "build_parser('skol-spark').parse_args(['train', '--input', 'x', '--model', 'y'])\n"
        "print(sorted({'keras', 'tensorflow'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.slow
def test_spark_submit_runs_the_job_file_with_its_master(spark, features_parquet, tmp_path):
    import pyspark

    from skol_spark import BiLSTMClassificationModel

    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    model, out, metrics = tmp_path / "model", tmp_path / "pred", tmp_path / "m.json"
    data = ["--input", str(features_parquet)]
    done = subprocess.run(
        [str(submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
         "--conf", "spark.sql.shuffle.partitions=2", str(ROOT / "skol_spark" / "submit.py"),
         "train", *data, "--model", str(model), *TINY_ARGS,
         "+", "predict", *data, "--model", str(model), "--output", str(out),
         "+", "evaluate", *data, "--model", str(model), "--json", str(metrics)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        # The user's own TF_CPP_MIN_LOG_LEVEL brings TensorFlow's lines back (the quiet default:
        # test_a_normal_train_prints_a_few_lines).
        env={**_env(), "TF_CPP_MIN_LOG_LEVEL": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained BiLSTMClassificationModel" in done.stdout and "macro-F1" in done.stdout
    assert "on Spark local[2]" in done.stdout  # spark-submit's master, not the CLI's local[*]
    assert re.search(r"^[IWE]\d{4} ", done.stderr, flags=re.M), done.stderr[-3000:]
    # Spark at WARN from the session's start (spark.log.level): only spark-submit's first lines are INFO.
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    assert len([line for line in lines if " INFO " in line]) <= 3, done.stderr[-3000:]
    assert not [line for line in lines if "py4j" in line or "Closing down clientserver" in line]
    labels = BiLSTMClassificationModel.load(str(model)).labels_
    n_in = spark.read.parquet(str(features_parquet)).count()
    assert spark.read.parquet(str(out)).count() == n_in > 0
    report = json.loads(metrics.read_text())
    assert report["labels"] == labels == ["Misc-exposition", "Nomenclature", "Description"]
    assert sum(c["support"] for c in report["per_class"].values()) == n_in


# What a quiet command must not print: TensorFlow's C++ lines, Spark's INFO lines and start-up
# notices, its progress bar, py4j's closing line.
_NOISE = re.compile(r"^[IWE]\d{4} |cuInit|oneDNN|absl::|cudart| INFO |log4j|Setting default log level|"
                    r"setLogLevel|\[Stage \d|py4j|Closing down clientserver|incubator modules")


@pytest.mark.slow
def test_a_normal_train_prints_a_few_lines(tmp_path):
    (tmp_path / "yedda").mkdir()
    yedda = _write_yedda(tmp_path / "yedda", docs=4)
    model = tmp_path / "model"
    env = {k: v for k, v in _env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "skol_spark", "train", "--input", str(yedda), "--model", str(model),
         "--three-classes", "--num-features", "64", "--epochs", "2", "--hidden-size", "8", "--window-size", "8"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    assert len(lines) <= 25, lines
    assert [line for line in lines if _NOISE.search(line)] == [], lines
    assert "fitting the text features, then the CRF and the BiLSTM on " in done.stderr
    assert "training an ensemble of 3 networks, 2 epochs, on 40 rows" in done.stderr  # the default ensemble
    assert [line.split(":")[0] for line in done.stderr.splitlines() if line.startswith("network ")] == [
        "network 1/3", "network 2/3", "network 3/3"]
    assert "trained PipelineModel in " in done.stdout
    # The user's own TF_CPP_MIN_LOG_LEVEL bringing TensorFlow's lines back: the spark-submit test.


def test_train_options_keep_the_estimators_defaults_and_parse_booleans(spark):
    from skol_spark import BiLSTMClassifier
    from skol_spark.cli.jobs import make_estimator
    from skol_spark.cli.main import _HYPERPARAMETERS, _columns, build_parser
    from skol_spark.skol.text_pipeline import DEFAULT_CRF_WEIGHT, DEFAULT_NUM_FEATURES, DEFAULT_PRIOR_CORRECTION

    base = ["train", "--input", "x.parquet", "--model", "m"]
    args = build_parser().parse_args(base)
    assert args.num_features == DEFAULT_NUM_FEATURES
    # No option given, none passed on: the estimator keeps its own defaults.
    assert all(getattr(args, param) is None for _, param, _ in _HYPERPARAMETERS)
    plain = BiLSTMClassifier()
    text = spark.createDataFrame([("d", 0, "Pileus brown.", "Description")], ["doc_id", "line_number", "text", "label"])
    numeric = spark.createDataFrame([("d", 0, [0.5, 1.0], 0)], ["doc_id", "line_number", "features", "label"])
    for df in (text, numeric):
        estimator = make_estimator(df, _columns(args), {})
        stages = estimator.getStages() if hasattr(estimator, "getStages") else [estimator]
        bilstm = next(s for s in stages if isinstance(s, BiLSTMClassifier))
        for _, param, _ in _HYPERPARAMETERS:
            assert not bilstm.isSet(param), param
            if plain.hasDefault(param):
                assert bilstm.getOrDefault(param) == plain.getOrDefault(param), param
    # Text trains the CRF beside the BiLSTM unless --crf false; the blend's options pass through.
    assert (args.crf, args.crf_weight, args.prior_correction) == (True, DEFAULT_CRF_WEIGHT, DEFAULT_PRIOR_CORRECTION)
    plain_text = build_parser().parse_args([*base, "--crf", "false", "--crf-weight", "0.3", "--prior-correction", "0"])
    assert plain_text.crf is False
    assert isinstance(make_estimator(text, _columns(args), {}, feature_options={"crf": False}).getStages()[-1],
                      BiLSTMClassifier)
    blend = make_estimator(text, _columns(args), {}, feature_options={"crfWeight": 0.3, "priorCorrection": 0.0})
    assert (blend.getStages()[-1].getWeights(), blend.getStages()[-1].getPriorCorrection()) == ([0.7, 0.3], 0.0)
    # --embedding-size 0 alone means one network, by the estimator's own rule.
    given = build_parser().parse_args([*base, "--embedding-size", "0"])
    assert (given.embeddingSize, given.ensembleSize) == (0, None)
    single = make_estimator(numeric, _columns(given), {"embeddingSize": 0})
    assert (single.getEmbeddingSize(), single.effectiveEnsembleSize()) == (0, 1)
    assert build_parser().parse_args([*base, "--tune-thresholds", "no"]).tuneThresholds is False
    assert build_parser().parse_args([*base, "--tune-thresholds", "True"]).tuneThresholds is True
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--tune-thresholds", "maybe"])


def test_journals_seed_and_epochs_override_the_defaults_only_when_given():
    from skol_spark.cli.main import build_parser, journal_overrides

    assert journal_overrides(build_parser().parse_args(["journals"])) == {}
    args = build_parser().parse_args(["journals", "--seed", "0", "--epochs", "3"])
    assert journal_overrides(args) == {"seed": 0, "epochs": 3}


def test_text_feature_options_default_to_the_pipelines_and_reach_its_stages(spark):
    from skol_spark.cli.jobs import make_estimator
    from skol_spark.cli.main import _columns, _feature_values, build_parser
    from skol_spark.skol import text_pipeline as tp

    base = ["train", "--input", "x.parquet", "--model", "m"]
    values = _feature_values(build_parser().parse_args(base))
    assert values == {"shape": True, "cues": True, "numShapeFeatures": tp.DEFAULT_NUM_SHAPE_FEATURES,
                      "shapeNgrams": tp.DEFAULT_SHAPE_NGRAMS, "wordTerms": tp.DEFAULT_WORD_TERMS,
                      "numWordTermFeatures": tp.DEFAULT_NUM_WORD_TERM_FEATURES, "taxonCues": tp.DEFAULT_TAXON_CUES,
                      "position": tp.DEFAULT_POSITION, "relativeLayout": tp.DEFAULT_RELATIVE_LAYOUT,
                      "wordVectors": tp.DEFAULT_WORD_VECTORS}
    args = build_parser().parse_args([*base, "--word-terms", "true", "--num-word-term-features", "32",
                                      "--taxon-cues", "yes", "--position", "1", "--relative-layout", "true",
                                      "--word-vectors", "16", "--doc-col", "article"])
    text = spark.createDataFrame([("d", 0, "Pileus brown.", "Description")], ["article", "line_number", "text", "label"])
    stages = make_estimator(text, _columns(args), {}, feature_options=_feature_values(args)).getStages()
    names = [type(s).__name__ for s in stages]
    assert "Word2Vec" in names and [s.getVectorSize() for s in stages if type(s).__name__ == "Word2Vec"] == [16]
    assert [s.getNumFeatures() for s in stages if s.hasParam("inputCol") and s.getInputCol() == "word_terms"] == [32]
    statements = " ".join(s.getStatement() for s in stages if type(s).__name__ == "SQLTransformer")
    assert "cue_binomials" in statements and "PARTITION BY `article`" in statements
    assert "position_relative" in statements and "layout_rel_length" in statements
