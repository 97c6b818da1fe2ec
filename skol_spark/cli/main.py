"""Command line: ``python -m skol_spark`` (or ``skol-spark``) trains, predicts and evaluates.

``train``, ``predict`` and ``evaluate`` run the jobs of :mod:`skol_spark.cli.jobs`
on Parquet, CSV, JSON Lines or YEDDA files, with models in a directory or
Redis. ``demo`` trains a BiLSTMClassifier on the bundled synthetic corpus,
labels held-out documents, and prints per-class precision/recall/F1 and
macro-F1 next to a per-line LogisticRegression on the same features and class
weights. ``journals`` compares the BiLSTM with two linear-chain CRFs and a
logistic regression on SKOL's annotated mycology journals, split by volume:
the public split, leaving one journal out (``--transfer``) or one volume out
(``--lovo``). Commands joined by a lone ``+`` run one after another in one
Spark session (``train ... + evaluate ...``).

Problems the user can fix end with a one-line ``error:`` message on stderr
and exit code 1 (2 for malformed arguments), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from skol_spark.cli.output import Output

__all__ = ["main", "build_parser"]


def _spark(master: str | None, output: Output):
    """The active session (notebook, tests), spark-submit's, or a quiet local one on ``master``.

    Executors default to this interpreter (``PYSPARK_PYTHON``). A session this
    function starts gets the command line's output settings (:mod:`skol_spark.cli.output`),
    except those the user set under spark-submit.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        if master and active.sparkContext.master != master:
            logging.getLogger("skol_spark").warning(
                "--master %s ignored: using the active session on %s", master, active.sparkContext.master
            )
        return active
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM, with its master
    builder = SparkSession.builder.appName("skol_spark")
    conf = output.session_conf(new_jvm=not submitted)
    if submitted:
        from pyspark import SparkConf, SparkContext

        SparkContext._ensure_initialized()
        given = SparkConf()
        conf = {k: v for k, v in conf.items() if not given.contains(k)}
    else:
        builder = (builder.master(master or "local[*]").config("spark.ui.enabled", "false")
                   .config("spark.sql.shuffle.partitions", "4"))
    for key, value in conf.items():
        builder = builder.config(key, value)
    with output.starting():
        spark = builder.getOrCreate()
        with contextlib.suppress(ImportError):  # the command that needs Keras says so
            import keras  # noqa: F401 - TensorFlow's start-up lines go through the filter now
    return spark


# (option, Param, type) of the BiLSTM hyperparameters train exposes. Only the given ones
# reach the estimator; the others keep its defaults, as in Python.
_HYPERPARAMETERS = (
    ("--epochs", "epochs", int),
    ("--window-size", "windowSize", int),
    ("--window-stride", "windowStride", int),
    ("--hidden-size", "hiddenSize", int),
    ("--embedding-size", "embeddingSize", int),
    ("--ensemble-size", "ensembleSize", int),
    ("--num-layers", "numLayers", int),
    ("--dropout", "dropout", float),
    ("--batch-size", "batchSize", int),
    ("--learning-rate", "learningRate", float),
    ("--weight-strategy", "weightStrategy", str),
    ("--validation-fraction", "validationFraction", float),
    ("--early-stopping-patience", "earlyStoppingPatience", int),
    ("--tune-thresholds", "tuneThresholds", "bool"),
    ("--seed", "seed", int),
)


def _true_or_false(text: str) -> bool:
    """A boolean option's value: true/false (also yes/no, 1/0)."""
    value = text.strip().lower()
    if value not in ("true", "false", "yes", "no", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, received {text!r}")
    return value in ("true", "yes", "1")


def _output_parent() -> argparse.ArgumentParser:
    """--quiet and --verbose, which every command takes."""
    shown = argparse.ArgumentParser(add_help=False)
    how = shown.add_mutually_exclusive_group()
    how.add_argument("--quiet", action="store_true", help="no training progress (results and errors only)")
    how.add_argument("--verbose", action="store_true",
                     help="also skol_spark's log, Spark's and TensorFlow's start-up lines and Spark's progress bar")
    return shown


def _job_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Options shared by train/predict/evaluate: the input, and a model to load."""
    from skol_spark.cli.jobs import FORMATS, Columns

    data = argparse.ArgumentParser(add_help=False, parents=[_output_parent()])
    data.add_argument("--input", required=True, nargs="+", metavar="PATH",
                      help="Parquet, CSV (with header) or JSON Lines files or directories, or YEDDA *.ann "
                           "files or directories of them; several paths or a quoted glob ('vols/Vol05*') "
                           "are read as one input")
    data.add_argument("--format", choices=FORMATS,
                      help="input format (default: guessed from the file names; required for remote paths)")
    defaults = Columns()
    for option, attribute, what in (
        ("--doc-col", "doc", "document id"),
        ("--position-col", "position", "position within the document"),
        ("--text-col", "text", "text, when there is no features column"),
        ("--label-col", "label", "label: class name or index"),
        ("--features-col", "features", "features: Vector or array of numbers"),
    ):
        data.add_argument(option, default=getattr(defaults, attribute), metavar="NAME",
                          help=f"column of the {what} (default: %(default)s)")
    data.add_argument("--three-classes", action="store_true",
                      help="map labels to SKOL's Nomenclature / Description / Misc-exposition first; train "
                           "saves the mapping with the model, so evaluate applies it again by itself")
    data.add_argument("--skip-unclosed", action="store_true",
                      help="YEDDA: read on past blocks opened with [@ and never closed, leaving their text "
                           "out (without it they are an error naming the file and line)")
    data.add_argument("--master",
                      help="Spark master when no session is active (default: local[*]); spark-submit's "
                           "own --master wins")
    stored = argparse.ArgumentParser(add_help=False)
    stored.add_argument("--model", required=True, metavar="DIR_OR_URL",
                        help="model directory, or redis://host:port/db (rediss:// for TLS) with --key")
    stored.add_argument("--key", help="Redis key of the model")
    return data, stored


def _feature_options(parser: argparse.ArgumentParser) -> None:
    from skol_spark.skol import text_pipeline as tp
    from skol_spark.skol.text_pipeline import DEFAULT_NUM_SHAPE_FEATURES, DEFAULT_SHAPE_NGRAMS

    parser.add_argument("--no-shape", action="store_true",
                        help="no token-shape features (Xxxx., dddd, ...) (text input)")
    parser.add_argument("--no-cues", action="store_true",
                        help="no nomenclatural cues (sp. nov., years, MycoBank, ...) (text input)")
    parser.add_argument("--num-shape-features", type=int, default=DEFAULT_NUM_SHAPE_FEATURES, metavar="N",
                        help="hashed token-shape space, text input (default: %(default)s)")
    parser.add_argument("--shape-ngrams", type=int, default=DEFAULT_SHAPE_NGRAMS, metavar="N",
                        help="runs of up to N token shapes hashed as terms, text input (default: %(default)s)")
    for option, dest, default, what in (
        ("--word-terms", "word_terms", tp.DEFAULT_WORD_TERMS,
         "word bigrams, suffixes, first and last word"),
        ("--taxon-cues", "taxon_cues", tp.DEFAULT_TAXON_CUES,
         "counts of binomials, author citations, numeric ranges; type, etymology, specimens, µm, × flags"),
        ("--position", "position", tp.DEFAULT_POSITION, "relative position in the document"),
        ("--relative-layout", "relative_layout", tp.DEFAULT_RELATIVE_LAYOUT,
         "length, lines and line width standardized within the document"),
    ):
        parser.add_argument(option, dest=dest, type=_true_or_false, default=default, metavar="{true,false}",
                            help=f"{what}, text input (default: {str(default).lower()})")
    parser.add_argument("--num-word-term-features", type=int, default=tp.DEFAULT_NUM_WORD_TERM_FEATURES,
                        metavar="N", help="hashed word-term space, text input (default: %(default)s)")
    parser.add_argument("--word-vectors", type=int, default=tp.DEFAULT_WORD_VECTORS, metavar="N",
                        help="size of Word2Vec vectors fitted on the training text, averaged per paragraph; "
                             "0: none (default: %(default)s)")


def _feature_values(args: argparse.Namespace) -> dict[str, Any]:
    return {"shape": not args.no_shape, "cues": not args.no_cues, "numShapeFeatures": args.num_shape_features,
            "shapeNgrams": args.shape_ngrams, "wordTerms": args.word_terms,
            "numWordTermFeatures": args.num_word_term_features, "taxonCues": args.taxon_cues,
            "position": args.position, "relativeLayout": args.relative_layout, "wordVectors": args.word_vectors}


def build_parser(prog: str = "python -m skol_spark") -> argparse.ArgumentParser:
    from skol_spark.skol.journals import MODELS
    from skol_spark.skol.text_pipeline import (
        DEFAULT_CRF,
        DEFAULT_CRF_WEIGHT,
        DEFAULT_NUM_FEATURES,
        DEFAULT_PRIOR_CORRECTION,
    )
    from skol_spark.stages.params import HELD_OUT_FRACTION, WEIGHT_STRATEGIES, _BiLSTMParams

    estimator_defaults = _BiLSTMParams()

    # The docstring's first line without its reST quotes: --help shows plain text.
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0].replace("``", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    data, stored = _job_parents()

    train = commands.add_parser(
        "train", parents=[data],
        help="fit a BiLSTM (with the text Pipeline for raw text) and save it",
        description="Fit on labelled rows and save the model. A numeric features column trains "
                    "a BiLSTMClassificationModel; text, or string labels, train a PipelineModel. "
                    "Either goes to a directory or to Redis. If the save fails, the model is kept in "
                    "a local directory the error names.",
    )
    train.add_argument("--model", required=True, metavar="DIR_OR_URL",
                       help="where to save: a directory, or redis://host:port/db with --key")
    train.add_argument("--key", help="Redis key to save under")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model")
    train.add_argument("--labels", help="class names by index, comma-separated, for numeric labels "
                                        "without ML attributes")
    train.add_argument("--num-features", type=int, default=DEFAULT_NUM_FEATURES, metavar="N",
                       help="hashed TF-IDF size, text input (default: %(default)s)")
    train.add_argument("--no-layout", action="store_true", help="no layout features (text input)")
    _feature_options(train)
    train.add_argument("--crf", type=_true_or_false, default=DEFAULT_CRF, metavar="{true,false}",
                       help="the feature-rich CRF beside the BiLSTM, their probabilities combined, text input "
                            f"(default: {str(DEFAULT_CRF).lower()})")
    train.add_argument("--crf-weight", type=float, default=DEFAULT_CRF_WEIGHT, metavar="W",
                       help="the CRF's exponent in the combination; the BiLSTM's is 1 - W (default: %(default)s)")
    train.add_argument("--prior-correction", type=float, default=DEFAULT_PRIOR_CORRECTION, metavar="G",
                       help="the combination's prior correction toward rare classes, (n_max / n_class) ** G "
                            "(default: %(default)s)")
    for option, param, kind in _HYPERPARAMETERS:
        extra: dict[str, Any] = {"choices": WEIGHT_STRATEGIES} if param == "weightStrategy" else {}
        default = estimator_defaults.getOrDefault(param) if estimator_defaults.hasDefault(param) else None
        shown = str(default).lower() if isinstance(default, bool) else default
        if default is None:
            shown = "windowSize" if param == "windowStride" else "unset"
        elif param == "validationFraction":
            shown = f"{shown}; {HELD_OUT_FRACTION} with --early-stopping-patience or --tune-thresholds true"
        elif param == "ensembleSize":
            shown = f"{shown}; 1 with --embedding-size 0"
        if kind == "bool":
            kind, extra = _true_or_false, {"metavar": "{true,false}"}
        elif not extra:
            extra = {"metavar": kind.__name__.upper()}
        train.add_argument(option, dest=param, type=kind, default=None,
                           help=f"BiLSTMClassifier {param} (default: {shown})", **extra)

    predict = commands.add_parser(
        "predict", parents=[data, stored],
        help="label rows with a saved model and write Parquet",
        description="Write the input columns plus prediction, probability and predicted_label "
                    "(the class name) as Parquet.",
    )
    predict.add_argument("--output", required=True, metavar="DIR", help="Parquet output directory")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output")
    predict.add_argument("--probability", choices=("array", "vector"), default="array",
                         help="probability as array<double>, readable anywhere (default), or a Spark ML Vector")

    evaluate = commands.add_parser(
        "evaluate", parents=[data, stored],
        help="per-class precision, recall, F1 of a saved model on labelled rows",
        description="Print the per-class table (precision, recall, F1, support, macro-F1, "
                    "accuracy) and optionally write it as JSON.",
    )
    evaluate.add_argument("--json", metavar="PATH", help="also write the metrics to this JSON file")

    copy = commands.add_parser(
        "copy", parents=[_output_parent(), stored],
        help="copy a saved model between a directory and Redis",
        description="Load a model (--model, --key) and save it elsewhere (--to, --to-key): e.g. the "
                    "directory a failed save kept, once Redis is back.",
    )
    copy.add_argument("--to", required=True, metavar="DIR_OR_URL", help="destination directory or redis:// URL")
    copy.add_argument("--to-key", help="Redis key at the destination")
    copy.add_argument("--overwrite", action="store_true", help="replace an existing model at the destination")
    copy.add_argument("--master", help="Spark master when no session is active (default: local[*])")

    demo = commands.add_parser("demo", parents=[_output_parent()],
                               help="train, transform and evaluate on synthetic documents")
    demo.add_argument("--docs", type=int, default=120, help="training documents (default 120)")
    demo.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--master", default="local[2]", help="Spark master when no session is active")
    journals = commands.add_parser(
        "journals", parents=[_output_parent()],
        help="BiLSTM vs two linear-chain CRFs and a per-paragraph logistic regression on SKOL's "
        "annotated journals",
        description="Train on some annotated volumes and evaluate on others: the public split (default), "
                    "each journal left out (--transfer) or each volume left out (--lovo). Prints per-class "
                    "precision, recall and F1 and the BiLSTM's macro-F1 gain over each baseline with a 95 %% "
                    "paired bootstrap interval (blocks of 100 consecutive paragraphs resampled).",
    )
    journals.add_argument(
        "--data",
        default=os.path.join("..", "shared", "data", "skol-annotated", "journals"),
        help="directory holding Mycotaxon/ and Persoonia/ (default ../shared/data/skol-annotated/journals)",
    )
    journals.add_argument("--epochs", type=int, help="override the tuned number of epochs")
    journals.add_argument("--seed", type=int,
                          help="BiLSTM seed (default: the estimator's); other seeds show the run-to-run spread")
    journals.add_argument("--num-features", type=int, default=DEFAULT_NUM_FEATURES,
                          help="hashed TF-IDF size (default: %(default)s)")
    journals.add_argument("--no-layout", action="store_true", help="no layout features")
    _feature_options(journals)
    journals.add_argument("--models", default=",".join(MODELS), metavar="LIST",
                          help="comma-separated models to run, from %(default)s")
    journals.add_argument("--baselines-only", action="store_true",
                          help="skip the BiLSTM and the blend (same as --models feature_crf,crf,logistic)")
    split = journals.add_mutually_exclusive_group()
    split.add_argument("--transfer", action="store_true",
                       help="leave one journal out instead of the public split: train on every Mycotaxon "
                            "volume, evaluate on every Persoonia volume, and the reverse")
    split.add_argument("--lovo", action="store_true",
                       help="leave one volume out instead of the public split: nine folds, each trained on "
                            "eight public volumes and evaluated on the ninth")
    journals.add_argument("--folds", metavar="LIST",
                          help="with --transfer or --lovo: only these comma-separated folds (held-out "
                               "volumes such as Mycotaxon/Vol056, or directions such as 'Mycotaxon -> Persoonia')")
    journals.add_argument("--volumes", metavar="LIST",
                          help="with --transfer or --lovo: the comma-separated journal/volume directories under "
                               "--data the folds are made of (default: the nine public volumes)")
    journals.add_argument("--max-docs", type=int, metavar="N",
                          help="keep only the first N documents of each split (quick runs)")
    journals.add_argument("--json", help="also write the reports and settings to this JSON file")
    journals.add_argument("--master", default="local[2]", help="Spark master when no session is active")
    return parser


def _columns(args: argparse.Namespace) -> Any:
    from skol_spark.cli.jobs import Columns

    return Columns(args.doc_col, args.position_col, args.text_col, args.label_col, args.features_col)


def _read(args: argparse.Namespace, paths: list[str], fmt: str, three_classes: bool) -> Any:
    from skol_spark.cli.jobs import read_input

    return read_input(_spark(args.master, args.console), paths, fmt, _columns(args), three_classes,
                      args.skip_unclosed)


def _inputs(args: argparse.Namespace) -> tuple[list[str], str]:
    """The input paths (globs expanded) and their format, checked before Spark starts."""
    from skol_spark.cli.jobs import detect_format, expand_inputs

    paths = expand_inputs(args.input)
    return paths, detect_format(paths, args.format)


def _shown(paths: list[str]) -> str:
    return paths[0] if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more"


def _where(location: str, key: str | None) -> str:
    return f"{location} key {key}" if key else location


def _train(args: argparse.Namespace) -> None:
    from skol_spark.cli.jobs import _bilstm, check_classes, check_destination, make_estimator, save_or_keep

    paths, fmt = _inputs(args)
    check_destination(args.model, args.key, args.overwrite)
    df = _read(args, paths, fmt, three_classes=False)  # the mapping becomes a stage of the model
    params = {param: getattr(args, param) for _, param, _ in _HYPERPARAMETERS
              if getattr(args, param) is not None}
    if args.labels:
        params["labels"] = [name.strip() for name in args.labels.split(",")]
    if args.quiet:
        params["verbose"] = False
    combination = {"crf": args.crf, "crfWeight": args.crf_weight, "priorCorrection": args.prior_correction}
    estimator = make_estimator(df, _columns(args), params, args.num_features, not args.no_layout,
                               {**_feature_values(args), **combination}, three_classes=args.three_classes)
    check_classes(df, estimator, _shown(args.input))
    if not args.quiet:
        stages = "the text features, then the BiLSTM" if _is_text(estimator) else "the BiLSTM"
        if _is_text(estimator) and args.crf:
            stages = "the text features, then the CRF and the BiLSTM"
        print(f"fitting {stages} on {_shown(args.input)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    model = estimator.fit(df)
    seconds = time.perf_counter() - started
    where = _where(args.model, args.key)
    save_or_keep(model, args.model, args.key, args.overwrite, where)
    bilstm = _bilstm(model)
    print(f"trained {type(model).__name__} in {seconds:.1f} s on Spark {_master(df.sparkSession)}, "
          f"{_shown(args.input)} (labels: {', '.join(bilstm.labels_)}); saved to {where}")


def _is_text(estimator: Any) -> bool:
    """Whether a Pipeline fits text features before the BiLSTM (more than label stages)."""
    from pyspark.ml.feature import IDF

    return any(isinstance(stage, IDF) for stage in getattr(estimator, "getStages", list)())


def _master(spark: Any) -> str:
    try:
        return spark.conf.get("spark.master", "?")
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def _predict(args: argparse.Namespace) -> None:
    from skol_spark.cli.jobs import JobError, check_source, load_model, predict

    paths, fmt = _inputs(args)
    check_source(args.model, args.key)
    if os.path.exists(args.output) and not args.overwrite:
        raise JobError(f"Output {args.output!r} exists; pass --overwrite to replace it.")
    df = _read(args, paths, fmt, args.three_classes)
    model = load_model(df.sparkSession, args.model, args.key)
    out = predict(model, df, _columns(args), args.probability)
    out.write.mode("overwrite" if args.overwrite else "errorifexists").parquet(args.output)
    print(f"wrote predictions for {_shown(args.input)} to {args.output}")


def _evaluate(args: argparse.Namespace) -> None:
    from skol_spark.cli.jobs import check_source, evaluate, load_model, write_json

    paths, fmt = _inputs(args)
    check_source(args.model, args.key)
    df = _read(args, paths, fmt, args.three_classes)
    model = load_model(df.sparkSession, args.model, args.key)
    report = evaluate(model, df, _columns(args), _shown(args.input))
    print(report.format(f"{_where(args.model, args.key)} on {_shown(args.input)}"))
    if args.json:
        write_json(args.json, {"model": args.model, "key": args.key, "input": args.input,
                               **report.to_dict()})


def _copy(args: argparse.Namespace) -> None:
    from skol_spark.cli.jobs import check_destination, check_source, load_model, save_model

    check_source(args.model, args.key)
    check_destination(args.to, args.to_key, args.overwrite)
    model = load_model(_spark(args.master, args.console), args.model, args.key)
    save_model(model, args.to, args.to_key, args.overwrite)
    print(f"copied {type(model).__name__} from {_where(args.model, args.key)} to {_where(args.to, args.to_key)}")


def _demo(args: argparse.Namespace) -> None:
    from skol_spark.cli.demo import run_demo

    run_demo(_spark(args.master, args.console), num_docs=args.docs, epochs=args.epochs, seed=args.seed,
             verbose=not args.quiet)


def journal_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The BiLSTM Params the journals command sets (the estimator's defaults otherwise)."""
    overrides: dict[str, Any] = {"epochs": args.epochs} if args.epochs else {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.quiet:
        overrides["verbose"] = False
    return overrides


def _journal_folds(args: argparse.Namespace) -> dict[str, Any]:
    """The folds --transfer or --lovo runs: of the public volumes or --volumes; all, or those --folds names."""
    from skol_spark.skol.protocol import PUBLIC_VOLUMES, journal_folds, lovo_folds

    volumes = [v.strip() for v in args.volumes.split(",") if v.strip()] if args.volumes else PUBLIC_VOLUMES
    splits = (journal_folds if args.transfer else lovo_folds)(volumes)
    if not args.folds:
        return {"splits": splits}
    names = [name.strip() for name in args.folds.split(",") if name.strip()]
    unknown = [name for name in names if name not in splits]
    if unknown or not names:
        raise ValueError(f"Expected --folds from {', '.join(splits)}. Received: {args.folds!r}")
    return {"splits": {name: splits[name] for name in names}}


def _journals(args: argparse.Namespace) -> None:
    from skol_spark.skol.journals import compare_on_journals, lovo_on_journals, transfer_on_journals

    overrides = journal_overrides(args)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.baselines_only:
        models = [m for m in models if m not in ("bilstm", "blend")]
    for option in ("folds", "volumes"):
        if getattr(args, option) and not (args.transfer or args.lovo):
            raise ValueError(f"Expected --{option} with --transfer or --lovo. Received: --{option} without either")
    run: Callable[..., Any] = compare_on_journals
    if args.transfer or args.lovo:
        run = functools.partial(transfer_on_journals if args.transfer else lovo_on_journals, **_journal_folds(args))
    result = run(
        _spark(args.master, args.console), args.data, numFeatures=args.num_features,
        layout=not args.no_layout, max_docs=args.max_docs, models=models,
        feature_options=_feature_values(args), **overrides,
    )
    print(result.format())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            out.write(result.to_json())


_COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "train": _train, "predict": _predict, "evaluate": _evaluate, "copy": _copy, "demo": _demo,
    "journals": _journals,
}


def _split_commands(argv: list[str]) -> list[list[str]]:
    """``train ... + evaluate ...`` into one argument list per command."""
    commands: list[list[str]] = [[]]
    for arg in argv:
        if arg == "+":
            commands.append([])
        else:
            commands[-1].append(arg)
    return commands


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is the whole story for a user (no traceback)."""
    from skol_spark.errors import ModelLoadError

    errors: tuple[type[BaseException], ...] = (ValueError, ModelLoadError, ImportError, OSError)
    try:
        from pyspark.errors import PySparkException
    except ImportError:
        return errors
    return (*errors, PySparkException)


def _one_line(exc: BaseException) -> str:
    """The line that says what went wrong: the first, or for an executor's Python error its last."""
    text = str(exc).split("JVM stacktrace:")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("SQLSTATE")]
    if not lines:
        return type(exc).__name__
    if "Traceback (most recent call last)" in text:  # pyspark's PythonException: the executor's own error
        return lines[-1]
    return lines[0]


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run one command, or several joined by ``+``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or ("skol-spark" if os.path.basename(sys.argv[0]) == "skol-spark" else "python -m skol_spark")
    try:
        parser = build_parser(prog)
        runs = [parser.parse_args(command) for command in _split_commands(argv)]
        output = Output(verbose=any(args.verbose for args in runs))
        output.configure_process()
        for args in runs:
            if args.command == "journals" and not os.path.isdir(args.data):
                parser.error(f"--data {args.data!r} is not a directory")
            args.console = output
            _COMMANDS[args.command](args)
    except _user_errors() as exc:
        if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] == "pyspark":
            from skol_spark import SPARK_MISSING

            exc = ImportError(f"{SPARK_MISSING}.")
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0
