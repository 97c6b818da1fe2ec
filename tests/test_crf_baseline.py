"""The CRF baseline: its features (pure Python), its fit, and its missing-dependency error."""

import sys

import numpy as np
import pytest

from skol_spark.skol.crf_baseline import (
    CRFSettings,
    collect_sequences,
    crf_confusion,
    document_features,
    fit_crf,
    paragraph_features,
    paragraph_shape,
)

NOMENCLATURE = "Agaricus niger Smith, sp. nov. MycoBank MB 512345. Fig. 3. ≡ Boletus niger (Fr.) Sacc. 1887."
DESCRIPTION = "Pileus 2-5 cm broad, convex, brown; lamellae free, crowded, white."
MISC = "We thank the curators for the loan of specimens"


def test_shape_has_the_issue_cues():
    shape = paragraph_shape(NOMENCLATURE)
    for cue in ("starts_upper", "ends_period", "year", "sp_nov", "equiv", "fig", "mycobank"):
        assert shape[cue] == 1.0, cue
    assert "comb_nov" not in shape and "starts_equals" not in shape
    assert paragraph_shape("= Boletus niger Fr., comb. nov.")["starts_equals"] == 1.0
    assert paragraph_shape("= Boletus niger Fr., comb. nov.")["comb_nov"] == 1.0
    plain = paragraph_shape(MISC)
    assert "ends_period" not in plain and "year" not in plain and "cap=0" in plain and "dig=0" in plain
    assert "lines=3" in paragraph_shape("a\nb\nc") and "lines=6" in paragraph_shape("a\n" * 20)
    # Binned shares: 10 bins by default, the top bin closed.
    assert "cap=9" in paragraph_shape("ABC") and "dig=9" in paragraph_shape("2024")
    assert "cap=1" in paragraph_shape("ABC", ratio_bins=2)
    assert "year" not in paragraph_shape("MB 512345 and 12345")  # digits of a longer number are no year


def test_words_are_lowercased_binary_and_capped():
    text = " ".join(f"Word{i}" for i in range(100)) + " word0"
    words = {k for k in paragraph_features(text) if k.startswith("w=")}
    assert len(words) == 60 and "w=word0" in words and "w=word59" in words and "w=word60" not in words
    assert paragraph_features(text)["w=word0"] == 1.0
    assert len({k for k in paragraph_features(text, CRFSettings(max_tokens=5)) if k.startswith("w=")}) == 5


def test_neighbours_give_shape_and_first_words_with_document_flags():
    items = document_features([NOMENCLATURE, DESCRIPTION, MISC])
    first, middle, last = items
    assert first["doc_start"] == 1.0 and "doc_end" not in first
    assert last["doc_end"] == 1.0 and "doc_start" not in last
    assert "doc_start" not in middle and "doc_end" not in middle
    assert middle["-1:sp_nov"] == 1.0 and middle["-1:w0=agaricus"] == 1.0 and middle["-1:w2=smith"] == 1.0
    assert "-1:w3=sp" not in middle  # three words of each neighbour
    assert middle["+1:w0=we"] == 1.0 and "+1:ends_period" not in middle
    assert first["+1:ends_period"] == 1.0
    # Neighbours' words beyond the first three, and their word unigrams, are not copied.
    assert not any(k.startswith("-1:w=") or k.startswith("+1:w=") for k in middle)


def _toy_corpus(n_docs=12):
    texts, labels = [], []
    for d in range(n_docs):
        texts.append([MISC, NOMENCLATURE.replace("niger", f"species{d}"), DESCRIPTION, DESCRIPTION, MISC])
        labels.append(["Misc-exposition", "Nomenclature", "Description", "Description", "Misc-exposition"])
    return texts, labels


def test_fit_crf_learns_a_toy_corpus():
    pytest.importorskip("sklearn_crfsuite")
    texts, labels = _toy_corpus()
    settings = CRFSettings(max_iterations=50)
    crf = fit_crf(texts, labels, settings)
    names = ["Description", "Misc-exposition", "Nomenclature"]
    confusion = crf_confusion(crf, texts, labels, names, settings)
    assert confusion.sum() == 60
    assert np.array_equal(confusion, np.diag(np.diag(confusion)))  # all right
    assert np.array_equal(np.diag(confusion), [24, 24, 12])


def test_fit_crf_refuses_misaligned_labels():
    pytest.importorskip("sklearn_crfsuite")
    texts, labels = _toy_corpus(2)
    labels[1] = labels[1][:-1]
    with pytest.raises(ValueError, match="Expected one label per paragraph in every document"):
        fit_crf(texts, labels)


def test_missing_sklearn_crfsuite_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn_crfsuite", None)  # what an absent package looks like to import
    texts, labels = _toy_corpus(2)
    with pytest.raises(ImportError, match=r'pip install "skol_spark\[bench\]"'):
        fit_crf(texts, labels)


def test_collect_sequences_orders_paragraphs_within_documents(spark):
    df = spark.createDataFrame(
        [("b", 1, "b1", "x"), ("a", 2, "a2", "z"), ("a", 0, "a0", "x"), ("a", 1, None, "y"), ("b", 0, "b0", "y")],
        ["doc_id", "line_number", "text", "label3"],
    )
    texts, labels = collect_sequences(df)
    assert texts == [["a0", "", "a2"], ["b0", "b1"]]
    assert labels == [["x", "y", "z"], ["y", "x"]]


def test_rich_recipe_adds_word_bigrams_suffixes_and_first_and_last_words():
    from skol_spark.skol.crf_baseline import FEATURE_CRF

    text = "Pileus 2-5 cm broad, brownish; lamellae crowded. " + " ".join(f"extra{i}" for i in range(40))
    rich = paragraph_features(text, FEATURE_CRF)
    plain = paragraph_features(text)
    assert set(plain) < set(rich)  # the plain features, plus
    bigrams = {k for k in rich if k.startswith("b=")}
    assert {"b=pileus|2", "b=2|5", "b=5|cm", "b=lamellae|crowded"} <= bigrams
    assert len(bigrams) == 29 and "b=extra20|extra21" in bigrams and "b=extra21|extra22" not in bigrams  # 30 words
    suffixes = {k for k in rich if k.startswith("s3=") or k.startswith("s4=")}
    # The first 12 words longer than 4 characters: pileus, broad, brownish, lamellae, crowded, extra0..extra3.
    assert {"s3=eus", "s4=leus", "s3=oad", "s4=road", "s3=ish", "s4=nish", "s3=ae", } - suffixes == {"s3=ae"}
    assert "s3=ra3" in suffixes and "s3=ra4" not in suffixes and not any(k.endswith("=cm") for k in suffixes)
    assert rich["first=pileus"] == rich["last=extra39"] == 1.0
    assert not any(k.startswith(("b=", "s3=", "s4=", "first=", "last=")) for k in plain)


def test_rich_recipe_cues_are_binned_counts_and_flags():
    from skol_spark.skol.crf_baseline import paragraph_cues

    cues = paragraph_cues("Holotype: Agaricus niger (Fr.) Smith and Boletus albus; spores 5-7 × 3–4 µm, 2,5 - 3 μm. "
                          "Etymology: dark. Specimens examined: none.")
    # The recipe's binomial pattern also takes "Smith and" and "Specimens examined".
    assert cues == {"binomials=4": 1.0, "citations=1": 1.0, "ranges=3": 1.0, "type": 1.0, "etymology": 1.0,
                    "examined": 1.0, "micrometres": 1.0, "times": 1.0}
    many = paragraph_cues(" ".join(f"Amanita species{i}" for i in range(9)))
    assert many["binomials=4"] == 1.0 and "citations=0" in many and "ranges=0" in many  # capped at 4
    assert paragraph_cues("typus") == {"binomials=0": 1.0, "citations=0": 1.0, "ranges=0": 1.0, "type": 1.0}


def test_rich_recipe_context_two_away_and_relative_position():
    from skol_spark.skol.crf_baseline import FEATURE_CRF

    texts = [NOMENCLATURE, DESCRIPTION, MISC, "Holotype here.", "Spores 5-7 µm."]
    items = document_features(texts, FEATURE_CRF)
    assert [next(k for k in item if k.startswith("relpos=")) for item in items] == [
        "relpos=0", "relpos=1", "relpos=2", "relpos=3", "relpos=4"]
    middle = items[2]
    assert middle["-2:sp_nov"] == 1.0 and middle["-2:binomials=2"] == 1.0  # shape and cues two before
    assert middle["+2:micrometres"] == 1.0 and middle["+2:ranges=1"] == 1.0  # and two after
    assert middle["+1:type"] == 1.0 and middle["-1:ranges=1"] == 1.0  # cues of the neighbours
    assert not any(k.startswith("-2:w") or k.startswith("+2:w") for k in middle)  # no words two away
    assert not any(k.startswith("-2:") for k in items[1]) and not any(k.startswith("+2:") for k in items[3])
    plain = document_features(texts)
    assert not any(k.startswith(("relpos=", "-2:", "+2:")) for item in plain for k in item)
    assert "-1:type" not in document_features(texts)[4]


def test_crf_settings_refuse_an_unknown_recipe():
    with pytest.raises(ValueError, match="Expected CRFSettings features to be one of 'plain', 'rich'. Received: 'x'"):
        CRFSettings(features="x")


def test_fit_crf_learns_a_toy_corpus_with_the_rich_recipe():
    pytest.importorskip("sklearn_crfsuite")
    from skol_spark.skol.crf_baseline import FEATURE_CRF, crf_predict

    texts, labels = _toy_corpus()
    crf = fit_crf(texts, labels, FEATURE_CRF)
    assert crf.max_iterations == 150 and crf.all_possible_transitions
    assert crf_predict(crf, texts, FEATURE_CRF) == labels


def test_collect_documents_keeps_ids_and_positions(spark):
    from skol_spark.skol.crf_baseline import collect_documents

    df = spark.createDataFrame(
        [("b", 5, "b5", "x"), ("a", 2, "a2", "z"), ("a", 0, "a0", "x"), ("b", 3, "b3", "y")],
        ["doc_id", "line_number", "text", "label3"],
    )
    documents = collect_documents(df)
    assert documents.doc_ids == ["a", "b"] and documents.positions == [[0, 2], [3, 5]]
    frame = documents.frame({"x": 0.0, "y": 1.0, "z": 2.0}, [["x", "x"], ["y", "z"]])
    assert frame.to_dict("list") == {"doc_id": ["a", "a", "b", "b"], "line_number": [0, 2, 3, 5],
                                     "label": [0.0, 2.0, 1.0, 0.0], "prediction": [0.0, 0.0, 1.0, 2.0]}
