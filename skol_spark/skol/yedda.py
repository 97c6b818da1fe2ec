"""Read YEDDA-annotated text into labelled blocks (pure Python and pyarrow, no Spark).

YEDDA writes an annotated block as ``[@TEXT#Label*]``: an opener ``[@``, the
text (OCR line breaks kept, often several lines) and a closer ``#Label*]``.
Text outside any block is unlabelled and ignored.

Hand-edited files break the markup in a few ways; :func:`parse_yedda` accepts
what it can, never drops a block silently, and counts every irregularity in
:class:`ParseProblems`:

=====================  ==========================================================
kind                   what happens
=====================  ==========================================================
``at_closer``          ``@Label*]`` (``@`` for ``#``) is accepted as a closer.
``unclosed_opener``    an opener never closed: its marker is ignored and its text,
                       up to the next marker, stays unlabelled (never guessed).
``orphan_closer``      a closer with no opener: it still closes a block, whose
                       text runs from the end of the previous marker.
``nested_block``       a block inside another block: both are emitted, the outer
                       one's text leaves out the inner block.
``empty_block``        a block whose text is only whitespace (mostly a lone form
                       feed): not emitted.
=====================  ==========================================================

Openers and closers are paired as brackets: a closer closes the latest open
opener. An opener left open by a forgotten closer would then pair with some
stray closer far below and swallow every block in between, so a pair that
would enclose more than ``max_enclosed`` blocks is taken apart into an
unclosed opener and an orphan closer. Genuine nesting is small: a page header
inside a paragraph that crosses a page break, or a section holding a few
sub-blocks (at most 11 in the SKOL journals, whose runaway pairs enclose 226 or
more; the default, 50, lies between).

:func:`read_yedda_files` refuses, with a :class:`~skol_spark.errors.YeddaError`
naming the file and line, what it cannot read as asked: bytes that are not
UTF-8, a file without any annotated block, and (unless ``unclosed="skip"``)
unclosed openers, whose text would be left without a label.

Blocks come in the order their text starts, so an outer block precedes the
blocks nested in it, and ``line_number`` counts the emitted blocks from 0. A
block's text is the raw text between its markers, OCR line breaks kept, only
stripped of surrounding whitespace.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from skol_spark.errors import YeddaError

__all__ = [
    "THREE_CLASSES",
    "UNCLOSED_POLICIES",
    "YEDDA_SCHEMA",
    "Block",
    "Issue",
    "ParseProblems",
    "ParseResult",
    "parse_yedda",
    "read_yedda_files",
    "to_three_classes",
]

logger = logging.getLogger("skol_spark")

THREE_CLASSES = ("Misc-exposition", "Nomenclature", "Description")
"""The SKOL 3-class label set; index ``i`` is class ``i``."""
OTHER_CLASS, KEPT_CLASSES = THREE_CLASSES[0], THREE_CLASSES[1:]
"""What every raw label but the kept ones becomes in the 3-class set."""

DEFAULT_MAX_ENCLOSED = 50

# An opener "[@", or a closer "#Label*]" / "@Label*]". Starting on the character
# class lets the regex engine skip plain text fast.
_MARKER = re.compile(r"[\[#@](?:(?<=\[)@|(?<=[#@])[A-Za-z][\w-]*\*\])")

YEDDA_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("line_number", pa.int32(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
    ]
)


class Block(NamedTuple):
    """One emitted block: its rank among emitted blocks, its text and raw label."""

    line_number: int
    text: str
    label: str


class Issue(NamedTuple):
    """Where one irregularity was found: its kind and 1-based line in the file."""

    kind: str
    line: int


@dataclass
class ParseProblems:
    """Irregularity counts; add two with ``+``. See the module docstring for the kinds."""

    at_closer: int = 0
    unclosed_opener: int = 0
    orphan_closer: int = 0
    nested_block: int = 0
    empty_block: int = 0

    def __add__(self, other: ParseProblems) -> ParseProblems:
        return ParseProblems(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return ", ".join(f"{name}={count}" for name, count in self.as_dict().items())


@dataclass
class ParseResult:
    """Blocks of one file in file order, with the irregularities found.

    ``issues`` holds one :class:`Issue` per counted irregularity, so
    ``Counter(kind for kind, _ in issues)`` equals ``problems.as_dict()``
    (zero counts aside).
    """

    blocks: list[Block]
    problems: ParseProblems = field(default_factory=ParseProblems)
    issues: list[Issue] = field(default_factory=list)


def parse_yedda(text: str, *, max_enclosed: int = DEFAULT_MAX_ENCLOSED) -> ParseResult:
    """Parse the YEDDA markup of one file into labelled blocks.

    Parameters
    ----------
    text : str
        The whole annotated file.
    max_enclosed : int, default 50
        Most blocks one block may enclose; a larger pair is taken as an
        unclosed opener plus an orphan closer.

    Returns
    -------
    ParseResult
        ``blocks`` ordered by where each block's text starts (an outer block
        before the blocks nested in it), numbered from 0 after empty blocks
        are dropped. ``text`` is the raw text with its OCR line breaks, only
        stripped of surrounding whitespace; ``label`` is the raw label.

    Examples
    --------
    >>> result = parse_yedda("[@Agaricus L.#Nomenclature*]\\n[@Pileus 3 cm,\\nbrown#Description*]")
    >>> [(b.text, b.label) for b in result.blocks]
    [('Agaricus L.', 'Nomenclature'), ('Pileus 3 cm,\\nbrown', 'Description')]
    """
    if not isinstance(text, str):
        raise TypeError(f"Expected text to be a str. Received: {type(text).__name__}")
    if isinstance(max_enclosed, bool) or not isinstance(max_enclosed, int) or max_enclosed < 0:
        raise ValueError(
            f"Expected max_enclosed to be a non-negative int. Received: {max_enclosed!r}"
        )
    # (start, end, label); label is None for an opener
    markers = [
        (m.start(), m.end(), None if text[m.start()] == "[" else text[m.start() + 1 : m.end() - 2])
        for m in _MARKER.finditer(text)
    ]
    partner, orphans, unclosed = _pair(markers)
    _split_oversized(markers, partner, orphans, unclosed, max_enclosed)

    issues: list[tuple[str, int]] = []  # (kind, position in text)
    # (where the block's text starts, position to report, raw text, label)
    found: list[tuple[int, int, str, str]] = []
    open_blocks: list[list] = []  # [opener index, cursor, text pieces], innermost last
    previous_end = 0
    for i, (start, end, label) in enumerate(markers):
        if label is None:
            if i in partner:
                if open_blocks:
                    outer = open_blocks[-1]
                    outer[2].append(text[outer[1] : start])
                    issues.append(("nested_block", start))
                open_blocks.append([i, end, []])
        else:
            if text[start] == "@":
                issues.append(("at_closer", start))
            if open_blocks and partner.get(open_blocks[-1][0]) == i:
                opener_index, cursor, pieces = open_blocks.pop()
                pieces.append(text[cursor:start])
                opener_start = markers[opener_index][0]
                found.append((opener_start, opener_start, "".join(pieces), label))
                if open_blocks:
                    open_blocks[-1][1] = end
            elif i in orphans:
                found.append((previous_end, start, text[previous_end:start], label))
        previous_end = end
    issues.extend(("unclosed_opener", markers[i][0]) for i in unclosed)
    issues.extend(("orphan_closer", markers[i][0]) for i in orphans)

    found.sort(key=lambda item: item[0])
    blocks: list[Block] = []
    for _, position, raw, label in found:
        stripped = raw.strip()
        if stripped:
            blocks.append(Block(len(blocks), stripped, label))
        else:
            issues.append(("empty_block", position))
    issues.sort(key=lambda issue: issue[1])
    newlines = [m.start() for m in re.finditer("\n", text)] if issues else []
    located = [Issue(kind, bisect.bisect_left(newlines, pos) + 1) for kind, pos in issues]
    counts = Counter(kind for kind, _ in issues)
    return ParseResult(blocks, ParseProblems(**counts), located)


def _pair(markers: list[tuple]) -> tuple[dict[int, int], set[int], set[int]]:
    """Bracket-pair markers: partner index both ways, orphan closers, unclosed openers."""
    partner: dict[int, int] = {}
    orphans: set[int] = set()
    stack: list[int] = []
    for i, (_, _, label) in enumerate(markers):
        if label is None:
            stack.append(i)
        elif stack:
            opener = stack.pop()
            partner[opener] = i
            partner[i] = opener
        else:
            orphans.add(i)
    return partner, orphans, set(stack)


def _split_oversized(
    markers: list[tuple],
    partner: dict[int, int],
    orphans: set[int],
    unclosed: set[int],
    max_enclosed: int,
) -> None:
    """Unpair, in place, every pair that encloses more than ``max_enclosed`` pairs.

    The enclosed count only grows outwards, so the unpaired pairs are the
    outermost ones and no kept pair loses a block it encloses.
    """
    paired_openers = [i for i, marker in enumerate(markers) if marker[2] is None and i in partner]
    for rank, opener in enumerate(paired_openers):
        closer = partner[opener]
        enclosed = bisect.bisect_left(paired_openers, closer) - rank - 1
        if enclosed > max_enclosed:
            unclosed.add(opener)
            orphans.add(closer)
    for i in unclosed | orphans:
        partner.pop(i, None)


UNCLOSED_POLICIES = ("error", "skip")


def read_yedda_files(
    paths: Iterable[str | os.PathLike],
    root: str | os.PathLike | None = None,
    *,
    max_enclosed: int = DEFAULT_MAX_ENCLOSED,
    unclosed: str = "error",
) -> tuple[pa.Table, ParseProblems]:
    """Parse many YEDDA files into one Arrow table.

    Parameters
    ----------
    paths : iterable of str or path-like
        Annotated files (UTF-8), read in the order given.
    root : str or path-like, optional
        ``doc_id`` is each path relative to ``root`` (POSIX separators); without
        ``root`` it is the path as given.
    max_enclosed : int, default 50
        Passed to :func:`parse_yedda`.
    unclosed : {"error", "skip"}, default "error"
        What a block opened with ``[@`` and never closed does (``unclosed_opener``:
        its text would stay unlabelled): ``"error"`` raises naming the first one's
        file and line, and how many there are; ``"skip"`` reads on, leaving
        that text out, and reports them in the log line.

    Returns
    -------
    (pyarrow.Table, ParseProblems)
        Columns ``doc_id`` (string), ``line_number`` (int32), ``text``
        (string), ``label`` (raw label, string), one row per block; and the
        irregularities summed over all files, also logged in one line on the
        ``skol_spark`` logger.

    Raises
    ------
    YeddaError
        A file that is not UTF-8 (its line and the byte), one with no
        annotated block, or (``unclosed="error"``) unclosed blocks.

    Examples
    --------
    >>> from pathlib import Path
    >>> root = Path("data/annotated/journals")
    >>> paths = sorted(root.rglob("*.txt.ann"))
    >>> table, problems = read_yedda_files(paths, root=root, unclosed="skip")  # doctest: +SKIP
    """
    if unclosed not in UNCLOSED_POLICIES:
        raise ValueError(f"Expected unclosed to be one of {UNCLOSED_POLICIES}. Received: {unclosed!r}")
    root_path = Path(root) if root is not None else None
    doc_ids: list[str] = []
    line_numbers: list[int] = []
    texts: list[str] = []
    labels: list[str] = []
    problems = ParseProblems()
    num_files = 0
    first: dict[str, str] = {}  # irregularity kind -> where it was first seen
    unclosed_files = 0
    for path in paths:
        path = Path(path)
        doc_id = _doc_id(path, root_path)
        result = parse_yedda(_read_utf8(path), max_enclosed=max_enclosed)
        if not result.blocks:
            raise YeddaError(
                f"{path}: no annotated block. YEDDA marks each block as [@text#Label*]; "
                "is this an annotated (.ann) file?"
            )
        for kind, line in result.issues:
            first.setdefault(kind, f"{path} line {line}")
        unclosed_files += bool(result.problems.unclosed_opener)
        for block in result.blocks:
            doc_ids.append(doc_id)
            line_numbers.append(block.line_number)
            texts.append(block.text)
            labels.append(block.label)
        problems = problems + result.problems
        num_files += 1
    if problems.unclosed_opener and unclosed == "error":
        raise YeddaError(
            f"{first['unclosed_opener']}: a block opened with '[@' is never closed, so its text "
            f"would have no label ({problems.unclosed_opener} such blocks in {unclosed_files} of "
            f"{num_files} files; a closer more than {max_enclosed} blocks away counts as none). "
            "Close it with #Label*], or read on without those texts (unclosed='skip'; "
            "on the command line --skip-unclosed)."
        )
    table = pa.table(
        [
            pa.array(doc_ids, pa.string()),
            pa.array(line_numbers, pa.int32()),
            pa.array(texts, pa.string()),
            pa.array(labels, pa.string()),
        ],
        schema=YEDDA_SCHEMA,
    )
    level = logging.WARNING if problems.unclosed_opener or problems.orphan_closer else logging.INFO
    where = "".join(
        f"; first {kind}: {first[kind]}" for kind in ("unclosed_opener", "orphan_closer") if kind in first
    )
    logger.log(level, "YEDDA: %d files, %d blocks; %s%s", num_files, table.num_rows, problems, where)
    return table, problems


def _read_utf8(path: Path) -> str:
    """The file's text; a byte that is not UTF-8 is an error naming its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YeddaError(
            f"{path} line {line}, column {column}: byte 0x{data[exc.start]:02x} is not UTF-8 ({exc.reason}). "
            "YEDDA files are read as UTF-8: convert the file, e.g. iconv -f latin1 -t utf-8."
        ) from None


def _doc_id(path: Path, root: Path | None) -> str:
    if root is None:
        return path.as_posix()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise ValueError(
            f"Expected every path to be under root {str(root)!r}. Received: {str(path)!r}"
        ) from None


def to_three_classes(label: str) -> str:
    """Map a raw SKOL label to :data:`THREE_CLASSES`.

    ``Nomenclature`` and ``Description`` are kept; every other label becomes
    ``Misc-exposition``.

    Examples
    --------
    >>> to_three_classes("Page-header"), to_three_classes("Nomenclature")
    ('Misc-exposition', 'Nomenclature')
    """
    return label if label in KEPT_CLASSES else OTHER_CLASS
