"""The train / predict / evaluate commands, the spark-submit job file, and their errors.

In-process tests run ``cli.main`` on the session ``spark`` fixture; the error
tests run ``python -m skol_spark`` in a subprocess and stop before Spark
starts; one test runs pyspark's own ``bin/spark-submit``.
"""

from __future__ import annotations

import json
import os
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
    assert kinds[-1] == "BiLSTMClassificationModel" and pipeline.stages[-1].getNumFeatures() > 64
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
        (["train", "--input", "yedda", "--model", "redis://127.0.0.1:1/0", "--key", "k"],
         "Redis stores only a BiLSTMClassificationModel"),
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
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained BiLSTMClassificationModel" in done.stdout and "macro-F1" in done.stdout
    assert "on Spark local[2]" in done.stdout  # spark-submit's master, not the CLI's local[*]
    labels = BiLSTMClassificationModel.load(str(model)).labels_
    n_in = spark.read.parquet(str(features_parquet)).count()
    assert spark.read.parquet(str(out)).count() == n_in > 0
    report = json.loads(metrics.read_text())
    assert report["labels"] == labels == ["Misc-exposition", "Nomenclature", "Description"]
    assert sum(c["support"] for c in report["per_class"].values()) == n_in


def test_train_options_keep_the_estimators_defaults_and_parse_booleans(spark):
    from skol_spark import BiLSTMClassifier
    from skol_spark.cli.jobs import make_estimator
    from skol_spark.cli.main import _HYPERPARAMETERS, _columns, build_parser
    from skol_spark.skol.text_pipeline import DEFAULT_NUM_FEATURES

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
        bilstm = estimator.getStages()[-1] if hasattr(estimator, "getStages") else estimator
        for _, param, _ in _HYPERPARAMETERS:
            assert not bilstm.isSet(param), param
            if plain.hasDefault(param):
                assert bilstm.getOrDefault(param) == plain.getOrDefault(param), param
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
