"""SKOL's annotated journals end to end, on a small scale (the full run is in BENCHMARKS.md)."""

import pytest
from conftest import SHARED_DATA, assert_same_predictions, predictions
from pyspark.ml import PipelineModel

from skol_spark.skol.datasets import read_yedda, with_three_classes

JOURNALS = SHARED_DATA / "journals"
needs_data = pytest.mark.skipif(
    not JOURNALS.is_dir(), reason=f"SKOL annotated journals not found at {JOURNALS} (../shared is absent)"
)


@needs_data
def test_read_yedda_gives_one_row_per_block_with_three_classes(spark):
    df, problems = read_yedda(spark, JOURNALS, ["Persoonia/Vol016", "Mycotaxon/Vol118"], unclosed="skip")
    assert df.columns == ["doc_id", "line_number", "text", "label"]
    if hasattr(df, "_jdf"):  # classic Spark: the optimizer must not run the text stages on the driver
        assert "LocalRelation" not in df.select("text")._jdf.queryExecution().optimizedPlan().toString()
    assert df.count() == 5555 + 3443
    counts = {r.label3: r["count"] for r in with_three_classes(df).groupBy("label3").count().collect()}
    assert counts == {"Nomenclature": 647 + 245, "Description": 781 + 150, "Misc-exposition": 4127 + 3048}
    assert df.select("doc_id").distinct().count() == 4 + 54
    assert df.filter("doc_id = 'Persoonia/Vol016/n1.txt.ann'").agg({"line_number": "max"}).first()[0] >= 1000
    # Malformed markup is counted and reported, never silently dropped.
    assert problems.nested_block > 0 and problems.empty_block > 0


@needs_data
def test_read_yedda_reads_single_files_beside_whole_volumes(spark):
    df, _ = read_yedda(spark, JOURNALS, ["Persoonia/Vol016/n2.txt.ann", "Mycotaxon/Vol117/s3.txt.ann"])
    assert sorted(r.doc_id for r in df.select("doc_id").distinct().collect()) == [
        "Mycotaxon/Vol117/s3.txt.ann", "Persoonia/Vol016/n2.txt.ann",
    ]


def test_read_yedda_refuses_missing_inputs(spark, tmp_path):
    with pytest.raises(ValueError, match="Expected a directory of YEDDA files"):
        read_yedda(spark, tmp_path / "absent")
    (tmp_path / "Vol1").mkdir()
    with pytest.raises(ValueError, match="No files matching '\\*.txt.ann' under .*Vol1"):
        read_yedda(spark, tmp_path, ["Vol1"])


@needs_data
def test_small_journal_comparison_runs(spark):
    from skol_spark.skol.journals import compare_on_journals

    result = compare_on_journals(
        spark, JOURNALS, ["Mycotaxon/Vol117"], ["Mycotaxon/Vol118"], numFeatures=256, max_docs=6,
        windowSize=20, hiddenSize=8, numLayers=1, epochs=1,
    )
    assert result.bilstm.labels == ["Description", "Misc-exposition", "Nomenclature"]
    assert result.bilstm.confusion.sum() == result.baseline.confusion.sum() == result.crf.confusion.sum() > 0
    assert list(result.reports) == ["bilstm", "crf", "logistic"] and set(result.fit_seconds) == set(result.reports)
    text = result.format()
    assert "macro-F1 gain" in text and "Nomenclature" in text
    assert text.splitlines()[1].startswith("bilstm") and text.splitlines()[2].startswith("crf")
    out = result.to_dict()
    assert out["settings"]["classifier"]["windowSize"] == 20
    assert {"bilstm", "crf", "baseline"} <= set(out) and out["settings"]["crf"]["c1"] == 0.1


def test_journal_models_are_checked(spark):
    from skol_spark.skol.journals import compare_on_journals

    with pytest.raises(ValueError, match="Expected models to be a non-empty subset of bilstm, crf, logistic"):
        compare_on_journals(spark, JOURNALS, models=["crf", "svm"])
    with pytest.raises(ValueError, match="Expected models to be a non-empty subset"):
        compare_on_journals(spark, JOURNALS, models=[])


@needs_data
@pytest.mark.slow
def test_journal_transfer_baselines_from_the_command_line(spark, tmp_path, capsys):
    import json

    from skol_spark.cli.main import main
    from skol_spark.skol.journals import TRANSFER_SPLITS

    path = tmp_path / "transfer.json"
    code = main(["journals", "--transfer", "--baselines-only", "--max-docs", "3", "--num-features", "128",
                 "--data", str(JOURNALS), "--json", str(path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Mycotaxon -> Persoonia: trained on Mycotaxon/Vol054" in printed and "Persoonia -> Mycotaxon" in printed
    directions = json.loads(path.read_text())["transfer"]
    assert list(directions) == list(TRANSFER_SPLITS)
    for name, (train, evaluate) in TRANSFER_SPLITS.items():
        result = directions[name]
        assert result["settings"]["train_volumes"] == list(train) and result["settings"]["eval_volumes"] == list(evaluate)
        assert "bilstm" not in result and result["crf"]["per_class"] and result["baseline"]["per_class"]
        assert not {v.split("/")[0] for v in train} & {v.split("/")[0] for v in evaluate}


@needs_data
def test_skol_pipeline_from_text_fits_saves_and_loads(spark, tmp_path):
    from skol_spark.skol.text_pipeline import LAYOUT_COLUMNS, skol_pipeline

    df, _ = read_yedda(spark, JOURNALS, ["Mycotaxon/Vol117"], unclosed="skip")
    df = with_three_classes(df).filter("doc_id < 'Mycotaxon/Vol117/s13'")
    model = skol_pipeline(numFeatures=128, windowSize=16, hiddenSize=8, numLayers=1, epochs=1).fit(df)
    out = model.transform(df)
    assert set(LAYOUT_COLUMNS) <= set(out.columns)
    layout = out.select(*LAYOUT_COLUMNS).first()
    assert all(0.0 <= v <= 2.0 for v in layout)
    path = str(tmp_path / "skol_pipeline")
    model.write().overwrite().save(path)
    assert_same_predictions(predictions(PipelineModel.load(path), df), predictions(model, df))
