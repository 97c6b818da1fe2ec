"""The YEDDA reader: markup rules on small inline strings, then the real SKOL files.

The annotated journals are GPL data kept outside the repository, in
``../shared/data/skol-annotated`` (relative to the repository root); the tests
that read them skip when it is absent. The expected numbers below are the
counts published in that directory's README.md.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from skol_spark.errors import YeddaError
from skol_spark.skol import yedda
from skol_spark.skol.yedda import (
    THREE_CLASSES,
    Block,
    Issue,
    ParseProblems,
    parse_yedda,
    read_yedda_files,
    to_three_classes,
)

SKOL_ANNOTATED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skol-annotated"
JOURNALS = SKOL_ANNOTATED / "journals"


def rows(result):
    return [(b.line_number, b.text, b.label) for b in result.blocks]


def problems(**counts):
    return ParseProblems(**counts)


def assert_issues_match_problems(result):
    counted = {kind: n for kind, n in result.problems.as_dict().items() if n}
    assert Counter(issue.kind for issue in result.issues) == counted


# ---------------------------------------------------------------- inline markup


def test_plain_block():
    result = parse_yedda("[@Boletus edulis Bull.#Nomenclature*]\n")
    assert result.blocks == [Block(0, "Boletus edulis Bull.", "Nomenclature")]
    assert result.problems == ParseProblems()
    assert result.issues == []


def test_multiline_block_keeps_line_breaks_and_strips_the_ends():
    text = "[@\n  Cap 4-9 cm, convex,\nthen flat; gills free.  \n#Description*]"
    result = parse_yedda(text)
    assert rows(result) == [(0, "Cap 4-9 cm, convex,\nthen flat; gills free.", "Description")]
    assert result.problems == ParseProblems()


def test_text_outside_blocks_is_ignored():
    text = "running head\n[@First#Title*]\nloose words\n\n[@Second\npart#Key*]\ntrailing"
    result = parse_yedda(text)
    assert rows(result) == [(0, "First", "Title"), (1, "Second\npart", "Key")]
    assert result.problems == ParseProblems()


def test_at_closer_is_accepted_and_counted():
    text = "[@\f42@Page-header*]\n[@Body text#Misc-exposition*]\n"
    result = parse_yedda(text)
    assert rows(result) == [(0, "42", "Page-header"), (1, "Body text", "Misc-exposition")]
    assert result.problems == problems(at_closer=1)
    assert result.issues == [Issue("at_closer", 1)]


def test_unclosed_opener_text_stays_unlabelled():
    text = "[@A paragraph whose closer was lost\n[@The next one#Description*]\n[@Third#Key*]"
    result = parse_yedda(text)
    assert rows(result) == [(0, "The next one", "Description"), (1, "Third", "Key")]
    assert result.problems == problems(unclosed_opener=1)
    assert result.issues == [Issue("unclosed_opener", 1)]


def test_unclosed_opener_at_end_of_file():
    result = parse_yedda("[@Done#Title*]\n[@never finished\n")
    assert rows(result) == [(0, "Done", "Title")]
    assert result.problems == problems(unclosed_opener=1)
    assert result.issues == [Issue("unclosed_opener", 2)]


def test_orphan_closer_closes_the_text_since_the_previous_marker():
    text = "[@One#Title*]\nno opener for this\nparagraph#Description*]\n[@Three#Key*]"
    result = parse_yedda(text)
    assert rows(result) == [
        (0, "One", "Title"),
        (1, "no opener for this\nparagraph", "Description"),
        (2, "Three", "Key"),
    ]
    assert result.problems == problems(orphan_closer=1)
    assert result.issues == [Issue("orphan_closer", 3)]


def test_orphan_closer_at_start_of_file():
    result = parse_yedda("header words#Misc-exposition*]\n[@Next#Key*]")
    assert rows(result) == [(0, "header words", "Misc-exposition"), (1, "Next", "Key")]
    assert result.problems == problems(orphan_closer=1)


def test_nested_block_is_emitted_after_its_outer_block_and_cut_out_of_it():
    text = "[@Spores smooth,\n[@\f17#Page-header*]\nhyaline.#Description*]\n[@After#Key*]"
    result = parse_yedda(text)
    assert rows(result) == [
        (0, "Spores smooth,\n\nhyaline.", "Description"),
        (1, "17", "Page-header"),
        (2, "After", "Key"),
    ]
    assert result.problems == problems(nested_block=1)
    assert result.issues == [Issue("nested_block", 2)]


def test_section_with_several_nested_blocks():
    text = (
        "[@Methods\n[@Sampling#Section-header*]\nWe walked.\n"
        "[@Fig. 1. A map.#Figure*]\nWe counted.#Materials-methods*]"
    )
    result = parse_yedda(text)
    assert rows(result) == [
        (0, "Methods\n\nWe walked.\n\nWe counted.", "Materials-methods"),
        (1, "Sampling", "Section-header"),
        (2, "Fig. 1. A map.", "Figure"),
    ]
    assert result.problems == problems(nested_block=2)


def test_empty_blocks_are_dropped_and_counted():
    text = "[@\f#Page-header*]\n[@  \n #Misc-exposition*]\n[@Real#Key*]\n[@\f@Page-header*]"
    result = parse_yedda(text)
    assert rows(result) == [(0, "Real", "Key")]
    assert result.problems == problems(empty_block=3, at_closer=1)
    assert_issues_match_problems(result)


def test_pair_enclosing_too_many_blocks_is_split():
    # A forgotten closer that the bracket pairing matches with a stray one far below.
    text = "[@lost\n[@a#Misc-exposition*]\n[@b#Misc-exposition*]\nstray#Figure*]"
    nested = parse_yedda(text)
    assert rows(nested) == [
        (0, "lost\n\n\nstray", "Figure"),
        (1, "a", "Misc-exposition"),
        (2, "b", "Misc-exposition"),
    ]
    assert nested.problems == problems(nested_block=2)

    split = parse_yedda(text, max_enclosed=1)
    assert rows(split) == [
        (0, "a", "Misc-exposition"),
        (1, "b", "Misc-exposition"),
        (2, "stray", "Figure"),
    ]
    assert split.problems == problems(unclosed_opener=1, orphan_closer=1)
    assert split.issues == [Issue("unclosed_opener", 1), Issue("orphan_closer", 4)]


def test_all_irregularities_together():
    text = (
        "no opener#Misc-exposition*]\n"
        "[@Genus species#Nomenclature*]\n"
        "[@Cap brown,\n[@\f3@Page-header*]\nstem white.#Description*]\n"
        "[@\f#Page-header*]\n"
        "[@lost opener\n"
    )
    result = parse_yedda(text)
    assert rows(result) == [
        (0, "no opener", "Misc-exposition"),
        (1, "Genus species", "Nomenclature"),
        (2, "Cap brown,\n\nstem white.", "Description"),
        (3, "3", "Page-header"),
    ]
    assert result.problems == ParseProblems(
        at_closer=1, unclosed_opener=1, orphan_closer=1, nested_block=1, empty_block=1
    )
    assert_issues_match_problems(result)


def test_opener_and_closer_left_apart_pair_up_like_brackets():
    # An unclosed opener followed by an orphan closer is one block with nested ones.
    text = "[@lost opener\n[@Inner#Key*]\nno opener#Misc-exposition*]"
    result = parse_yedda(text)
    assert rows(result) == [(0, "lost opener\n\nno opener", "Misc-exposition"), (1, "Inner", "Key")]
    assert result.problems == problems(nested_block=1)


def test_problems_add_up():
    total = problems(at_closer=1, empty_block=2) + problems(empty_block=3, nested_block=1)
    assert total == problems(at_closer=1, empty_block=5, nested_block=1)
    assert str(total) == (
        "at_closer=1, unclosed_opener=0, orphan_closer=0, nested_block=1, empty_block=5"
    )


def test_parse_errors():
    with pytest.raises(TypeError, match="Expected text to be a str. Received: bytes"):
        parse_yedda(b"[@x#Key*]")
    message = "Expected max_enclosed to be a non-negative int. Received: -1"
    with pytest.raises(ValueError, match=message):
        parse_yedda("", max_enclosed=-1)


def test_three_classes():
    assert THREE_CLASSES == ("Misc-exposition", "Nomenclature", "Description")
    assert to_three_classes("Nomenclature") == "Nomenclature"
    assert to_three_classes("Description") == "Description"
    for label in ("Misc-exposition", "Page-header", "Bibliography", "Diagnosis", "m"):
        assert to_three_classes(label) == "Misc-exposition"


def test_module_does_not_import_pyspark():
    # Load the file on its own: the package __init__ imports pyspark for the estimator.
    path = Path(yedda.__file__).resolve()
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('yedda', {str(path)!r})\n"
        "module = sys.modules['yedda'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert module.parse_yedda('[@x#Key*]').blocks[0].text == 'x'\n"
        "print('pyspark' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- reading files


def test_read_yedda_files(tmp_path, caplog):
    (tmp_path / "J" / "V1").mkdir(parents=True)
    first = tmp_path / "J" / "V1" / "a.txt.ann"
    second = tmp_path / "J" / "V1" / "b.txt.ann"
    first.write_text("[@Alpha#Title*]\n[@Beta\nbeta#Description*]\n", encoding="utf-8")
    second.write_text(
        "[@Gamma\u00e9#Nomenclature*]\n[@\f#Page-header*]\nloose#Key*]\n", encoding="utf-8"
    )
    with caplog.at_level(logging.INFO, logger="skol_spark"):
        table, found = read_yedda_files([first, str(second)], root=tmp_path)
    assert table.schema == pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("line_number", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
        ]
    )
    assert table.to_pydict() == {
        "doc_id": ["J/V1/a.txt.ann"] * 2 + ["J/V1/b.txt.ann"] * 2,
        "line_number": [0, 1, 0, 1],
        "text": ["Alpha", "Beta\nbeta", "Gamma\u00e9", "loose"],
        "label": ["Title", "Description", "Nomenclature", "Key"],
    }
    assert found == problems(orphan_closer=1, empty_block=1)
    records = [r for r in caplog.records if r.name == "skol_spark"]
    assert len(records) == 1
    assert "2 files" in records[0].getMessage() and "orphan_closer=1" in records[0].getMessage()


def test_read_yedda_files_without_root_and_empty(tmp_path):
    path = tmp_path / "x.txt.ann"
    path.write_text("[@One#Key*]", encoding="utf-8")
    table, _ = read_yedda_files([path])
    assert table.column("doc_id").to_pylist() == [path.as_posix()]
    empty, found = read_yedda_files([])
    assert empty.num_rows == 0 and empty.schema == table.schema
    assert found == ParseProblems()


def test_read_yedda_files_path_outside_root(tmp_path):
    path = tmp_path / "x.txt.ann"
    path.write_text("[@One#Key*]", encoding="utf-8")
    with pytest.raises(ValueError, match="Expected every path to be under root"):
        read_yedda_files([path], root=tmp_path / "elsewhere")


def test_a_file_that_is_not_utf8_is_an_error_naming_its_line_column_and_byte(tmp_path):
    path = tmp_path / "latin1.txt.ann"
    path.write_bytes("[@Agaricus L.#Nomenclature*]\n[@Pileus caf\u00e9#Description*]\n".encode("latin-1"))
    with pytest.raises(YeddaError, match=r"latin1\.txt\.ann line 2, column 13: byte 0xe9 is not UTF-8 .*iconv"):
        read_yedda_files([path])


@pytest.mark.parametrize("text", ["plain text, never annotated\n", "", "[@\f#Page-header*]\n"],
                         ids=["no-markup", "empty", "only-empty-blocks"])
def test_a_file_without_annotated_blocks_is_an_error_naming_it(tmp_path, text):
    good, bad = tmp_path / "good.txt.ann", tmp_path / "bad.txt.ann"
    good.write_text("[@Agaricus L.#Nomenclature*]\n", encoding="utf-8")
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(YeddaError, match=r"bad\.txt\.ann: no annotated block\. YEDDA marks each block"):
        read_yedda_files([good, bad])


def test_unclosed_blocks_are_an_error_naming_the_first_unless_skipped(tmp_path, caplog):
    first, second, fine = (tmp_path / f"{name}.txt.ann" for name in ("a", "b", "c"))
    first.write_text("[@Alpha#Title*]\n[@Beta, never closed\n[@Gamma#Description*]\n", encoding="utf-8")
    second.write_text("[@Delta#Title*]\n\n\n[@Epsilon, never closed\n", encoding="utf-8")
    fine.write_text("[@Zeta#Title*]\n", encoding="utf-8")
    message = r"a\.txt\.ann line 2: a block opened with '\[@' is never closed.*\(2 such blocks in 2 of 3 files"
    with pytest.raises(YeddaError, match=message + r".*unclosed='skip'.*--skip-unclosed"):
        read_yedda_files([first, second, fine], root=tmp_path)
    with caplog.at_level(logging.INFO, logger="skol_spark"):
        table, found = read_yedda_files([first, second, fine], root=tmp_path, unclosed="skip")
    assert table.column("text").to_pylist() == ["Alpha", "Gamma", "Delta", "Zeta"]  # as parse_yedda counts them
    assert found == problems(unclosed_opener=2)
    [record] = [r for r in caplog.records if r.name == "skol_spark"]
    assert record.levelno == logging.WARNING and f"first unclosed_opener: {first} line 2" in record.getMessage()
    with pytest.raises(ValueError, match="Expected unclosed to be one of"):
        read_yedda_files([fine], unclosed="guess")


# ---------------------------------------------------------------- the real SKOL files

# From ../shared/data/skol-annotated/README.md: files, paragraphs, Nomenclature,
# Description, Misc-exposition per volume.
README_VOLUMES = {
    "Mycotaxon/Vol054": (1, 5768, 368, 421, 4979),
    "Mycotaxon/Vol055": (1, 7773, 407, 514, 6852),
    "Mycotaxon/Vol056": (1, 6842, 641, 498, 5703),
    "Mycotaxon/Vol057": (1, 10331, 830, 318, 9183),
    "Mycotaxon/Vol058": (1, 7822, 663, 449, 6710),
    "Mycotaxon/Vol117": (49, 4509, 185, 354, 3970),
    "Mycotaxon/Vol118": (54, 3443, 245, 150, 3048),
    "Persoonia/Vol016": (4, 5555, 647, 781, 4127),
    "Persoonia/Vol017": (4, 7015, 777, 790, 5448),
}
README_TOTAL = (116, 59058, 4763, 4275, 50020)
README_LABELS = {
    "Misc-exposition": 37116, "Bibliography": 5341, "Nomenclature": 4763, "Description": 4275,
    "Page-header": 3894, "Figure": 1401, "Habitat-distribution": 452, "Key": 271,
    "Institution": 250, "Abstract": 176, "Diagnosis": 161, "Section-header": 154, "Table": 138,
    "Comments": 110, "Specimens": 99, "MB": 93, "Author": 69, "Type-collection": 62,
    "Title": 51, "Acknowledgements": 50, "Key-words": 49, "Materials-methods": 45,
    "Etymology": 30, "m": 2, "Contents": 2, "Common-name": 2, "Comment": 1, "AnnotatorComment": 1,
}  # fmt: skip
README_PROBLEMS = ParseProblems(
    at_closer=46, unclosed_opener=68, orphan_closer=18, nested_block=350, empty_block=440
)


@pytest.fixture(scope="module")
def skol_paths():
    if not JOURNALS.is_dir():
        pytest.skip(
            f"SKOL annotated journals not found at {JOURNALS} "
            "(GPL data, kept outside the repository in ../shared)"
        )
    return sorted(JOURNALS.rglob("*.txt.ann"))


@pytest.fixture(scope="module")
def skol(skol_paths):
    table, found = read_yedda_files(skol_paths, root=JOURNALS, unclosed="skip")
    frame = table.to_pandas()
    frame["volume"] = frame["doc_id"].str.rsplit("/", n=1).str[0]
    frame["three_class"] = frame["label"].map(to_three_classes)
    return table, frame, found


def differences(got: dict, expected: dict) -> dict:
    """``{key: (got, expected)}`` where they differ; printed by pytest on failure."""
    keys = sorted(set(got) | set(expected))
    return {k: (got.get(k), expected.get(k)) for k in keys if got.get(k) != expected.get(k)}


def test_skol_files_per_volume(skol_paths):
    got = Counter(p.relative_to(JOURNALS).parent.as_posix() for p in skol_paths)
    assert differences(dict(got), {v: counts[0] for v, counts in README_VOLUMES.items()}) == {}
    assert len(skol_paths) == README_TOTAL[0]


def test_skol_blocks_per_volume_and_class(skol):
    _, frame, _ = skol
    columns = ("Nomenclature", "Description", "Misc-exposition")  # the README's order
    got = {
        volume: (len(group), *(int((group["three_class"] == c).sum()) for c in columns))
        for volume, group in frame.groupby("volume")
    }
    expected = {volume: counts[1:] for volume, counts in README_VOLUMES.items()}
    assert differences(got, expected) == {}
    total = Counter(frame["three_class"])
    assert (len(frame), *(total[c] for c in columns)) == README_TOTAL[1:]
    assert set(total) == set(THREE_CLASSES)


def test_skol_blocks_per_raw_label(skol):
    _, frame, _ = skol
    assert differences(dict(Counter(frame["label"])), README_LABELS) == {}


def test_skol_problems_match_readme(skol):
    _, _, found = skol
    assert differences(found.as_dict(), README_PROBLEMS.as_dict()) == {}
    # The README's grep: 59452 "#Label*]" closers, plus the "@Label*]" ones, minus empty ones.
    assert README_TOTAL[1] == 59452 + found.at_closer - found.empty_block


def test_skol_table_is_well_formed(skol):
    table, frame, _ = skol
    assert table.schema.field("line_number").type == pa.int32()
    assert frame["text"].str.len().min() > 0
    assert frame["text"].str.strip().eq(frame["text"]).all()
    assert not frame["text"].str.contains(r"\[@|[#@][A-Za-z][\w-]*\*\]", regex=True).any()
    for _, numbers in frame.groupby("doc_id")["line_number"]:
        assert numbers.tolist() == list(range(len(numbers)))


def test_skol_forgotten_closer_is_not_taken_as_nesting(skol_paths):
    # Mycotaxon Vol057 has unclosed openers in its host index and, hundreds of
    # pages below, closers with no opener. Plain bracket pairing matches five of
    # each and nests 2489 blocks inside them; max_enclosed takes those five pairs
    # apart, which gives the README's counts. The rows emitted are the same,
    # only which text goes to which block changes.
    text = (JOURNALS / "Mycotaxon" / "Vol057" / "n1.txt.ann").read_text(encoding="utf-8")

    def markup_errors(result):
        p = result.problems
        return p.unclosed_opener, p.orphan_closer, p.nested_block

    default = parse_yedda(text)
    unbounded = parse_yedda(text, max_enclosed=10**9)
    assert markup_errors(default) == (18, 5, 0)
    assert markup_errors(unbounded) == (13, 0, 2489)
    assert len(default.blocks) == len(unbounded.blocks) == README_VOLUMES["Mycotaxon/Vol057"][1]
