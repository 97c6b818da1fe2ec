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
        windowSize=20, hiddenSize=8, numLayers=1, epochs=1, ensembleSize=1,
    )
    assert result.bilstm.labels == ["Description", "Misc-exposition", "Nomenclature"]
    total = result.bilstm.confusion.sum()
    assert total == result.baseline.confusion.sum() == result.crf.confusion.sum() == result.feature_crf.confusion.sum()
    assert list(result.reports) == ["bilstm", "blend", "feature_crf", "crf", "logistic"]
    assert set(result.fit_seconds) == set(result.reports)
    # Every model's block confusions cover the same rows and sum to its report.
    for name, report in result.reports.items():
        assert (result.blocks[name].sum(axis=0) == report.confusion).all()
        assert len(result.rows[name]) == total
    assert len(result.block_keys) == result.blocks["bilstm"].shape[0]
    assert result.rows["bilstm"]["probability"].map(len).eq(3).all()
    blend = result.rows["blend"]  # the same rows as the BiLSTM's, in the same order
    assert blend[["doc_id", "line_number", "label"]].equals(result.rows["bilstm"][["doc_id", "line_number", "label"]])
    assert all(abs(sum(p) - 1) < 1e-9 and max(range(3), key=p.__getitem__) == y
               for p, y in zip(blend["probability"], blend["prediction"]))
    text = result.format()
    assert "macro-F1 gain" in text and "Nomenclature" in text and "block-bootstrap interval" in text
    assert [line.split()[0] for line in text.splitlines()[1:6]] == ["bilstm", "blend", "feature_crf", "crf", "logistic"]
    assert "blend vs feature_crf: macro-F1 gain" in text
    out = result.to_dict()
    assert out["settings"]["classifier"]["windowSize"] == 20
    assert {"bilstm", "feature_crf", "crf", "baseline"} <= set(out) and out["settings"]["crf"]["c1"] == 0.1
    assert out["settings"]["feature_crf"]["features"] == "rich" and out["settings"]["feature_crf"]["max_iterations"] == 150
    interval = out["bootstrap"]["feature_crf"]
    assert interval["low"] <= interval["difference"] <= interval["high"]
    assert out["bootstrap"]["blend_vs_feature_crf"]["difference"] == pytest.approx(
        out["blend"]["macro_f1"] - out["feature_crf"]["macro_f1"])


def test_journal_models_are_checked(spark):
    from skol_spark.skol.journals import compare_on_journals

    with pytest.raises(ValueError, match="Expected models to be a non-empty subset of bilstm, blend, feature_crf, crf, logistic"):
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
    # One document per split and small hashed spaces: both directions still read, fit and score every baseline.
    code = main(["journals", "--transfer", "--baselines-only", "--max-docs", "1", "--num-features", "128",
                 "--num-shape-features", "128", "--num-word-term-features", "128",
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
        assert result["feature_crf"]["per_class"]
        assert not {v.split("/")[0] for v in train} & {v.split("/")[0] for v in evaluate}


@needs_data
def test_skol_pipeline_from_text_fits_saves_and_loads(spark, tmp_path):
    from skol_spark.skol.text_pipeline import LAYOUT_COLUMNS, skol_pipeline

    df, _ = read_yedda(spark, JOURNALS, ["Mycotaxon/Vol117"], unclosed="skip")
    df = with_three_classes(df).filter("doc_id < 'Mycotaxon/Vol117/s13'")
    model = skol_pipeline(numFeatures=128, windowSize=16, hiddenSize=8, numLayers=1, epochs=1, ensembleSize=1).fit(df)
    *_, indexer, crf, bilstm, blend = model.stages
    assert type(crf).__name__ == "FeatureCRFModel" and type(blend).__name__ == "ProbabilityBlendModel"
    assert blend.labels_ == bilstm.labels_ == list(indexer.labels) == ["Description", "Misc-exposition", "Nomenclature"]
    out = model.transform(df)
    assert {"bilstmProbability", "crfProbability", "probability", "prediction", "rawPrediction"} <= set(out.columns)
    assert set(LAYOUT_COLUMNS) <= set(out.columns)
    layout = out.select(*LAYOUT_COLUMNS).first()
    assert all(0.0 <= v <= 2.0 for v in layout)
    path = str(tmp_path / "skol_pipeline")
    model.write().overwrite().save(path)
    assert_same_predictions(predictions(PipelineModel.load(path), df), predictions(model, df))


# Small volumes for the fold modes: two articles each, two "journals".
SMALL_VOLUMES = {
    "A/Vol1": ["Mycotaxon/Vol117/s2.txt.ann", "Mycotaxon/Vol117/s3.txt.ann"],
    "A/Vol2": ["Mycotaxon/Vol118/s5.txt.ann", "Mycotaxon/Vol118/s9.txt.ann"],
    "B/Vol1": ["Mycotaxon/Vol118/s10.txt.ann", "Mycotaxon/Vol118/s41.txt.ann"],
}


@pytest.fixture
def small_journals(tmp_path):
    """A data root of three small volumes linked from the shared journals."""
    for volume, files in SMALL_VOLUMES.items():
        (tmp_path / volume).mkdir(parents=True)
        for name in files:
            (tmp_path / volume / name.rsplit("/", 1)[1]).symlink_to(JOURNALS / name)
    return tmp_path


@needs_data
def test_leave_one_volume_out_end_to_end(spark, small_journals):
    import json

    from skol_spark.skol.journals import lovo_on_journals
    from skol_spark.skol.protocol import lovo_folds

    result = lovo_on_journals(spark, small_journals, lovo_folds(list(SMALL_VOLUMES)), numFeatures=256,
                              models=["blend"], windowSize=16, hiddenSize=8, numLayers=1, epochs=1,
                              ensembleSize=1)
    assert list(result.folds) == list(SMALL_VOLUMES)
    for volume, comparison in result.folds.items():
        assert comparison.settings["eval_volumes"] == [volume]
        assert volume not in comparison.settings["train_volumes"]
        assert {r.split("/")[0] + "/" + r.split("/")[1] for r in comparison.rows["bilstm"]["doc_id"]} == {volume}
    pooled = result.pooled("feature_crf")
    assert (pooled.confusion == sum(c.feature_crf.confusion for c in result.folds.values())).all()
    mean = sum(c.reports["bilstm"].macro_f1 for c in result.folds.values()) / 3
    assert result.mean_macro_f1("bilstm") == pytest.approx(mean)
    summary = result.summary()
    assert set(summary) == {"bilstm", "blend", "feature_crf"}  # the blend brings the two it combines
    assert "vs_feature_crf" in summary["blend"] and "vs_blend" in summary["bilstm"]
    gain = summary["bilstm"]["vs_feature_crf"]["mean"]
    assert gain["difference"] == pytest.approx(mean - result.mean_macro_f1("feature_crf"))
    assert gain["low"] <= gain["difference"] <= gain["high"] and gain["units"] >= 3
    text = result.format()
    assert "A/Vol2: trained on A/Vol1, B/Vol1; evaluated on A/Vol2" in text
    assert "bilstm vs feature_crf: mean macro-F1 gain" in text and "of 3 folds" in text
    assert "blend vs feature_crf: mean macro-F1 gain" in text
    out = json.loads(result.to_json())
    assert list(out["lovo"]) == list(SMALL_VOLUMES) and "summary" in out


@needs_data
def test_journals_command_leaves_volumes_and_journals_out(spark, small_journals, tmp_path, capsys):
    import json

    from skol_spark.cli.main import main

    volumes = ",".join(SMALL_VOLUMES)
    path = tmp_path / "lovo.json"
    code = main(["journals", "--lovo", "--models", "feature_crf,crf", "--volumes", volumes, "--folds",
                 "A/Vol2,B/Vol1", "--data", str(small_journals), "--json", str(path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "B/Vol1: trained on A/Vol1, A/Vol2; evaluated on B/Vol1" in printed and "pooled macro-F1" in printed
    out = json.loads(path.read_text())
    assert list(out["lovo"]) == ["A/Vol2", "B/Vol1"] and "bilstm" not in out["summary"]
    assert set(out["summary"]) == {"feature_crf", "crf"}
    path = tmp_path / "transfer.json"
    assert main(["journals", "--transfer", "--baselines-only", "--models", "feature_crf", "--volumes", volumes,
                 "--data", str(small_journals), "--json", str(path)]) == 0
    out = json.loads(path.read_text())
    assert list(out["transfer"]) == ["B -> A", "A -> B"]
    assert out["transfer"]["A -> B"]["settings"]["train_volumes"] == ["A/Vol1", "A/Vol2"]


@pytest.mark.parametrize("argv, match", [
    (["--folds", "A/Vol1"], "Expected --folds with --transfer or --lovo"),
    (["--lovo", "--folds", "Mycotaxon/Vol999"], "Expected --folds from Mycotaxon/Vol054"),
    (["--transfer", "--volumes", "Mycotaxon/Vol054,Mycotaxon/Vol055"], "Expected volumes of at least two journals"),
])
def test_journals_command_refuses_bad_folds(argv, match, capsys):
    from skol_spark.cli.main import main

    assert main(["journals", "--baselines-only", "--data", ".", *argv]) == 1
    assert match in capsys.readouterr().err
