"""Driver side: one ``fit`` from a DataFrame to a trained network, for the estimator.

:func:`fit_network` takes a :class:`FitRequest` (the estimator's Params as
plain values, already checked) and does the work in order: the class names
and row count (one Spark aggregation), the feature width, then either the
driver fit (collect, class weights, Keras training, the rebuild check,
tuned thresholds) or the data-parallel fit on the executors, and last the
MLflow record. It returns a :class:`FitResult`; the stage turns that into a
model. Nothing here imports a stage class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skol_spark.core.class_weights import resolve_class_weights
from skol_spark.core.thresholds import check_thresholds
from skol_spark.fit.progress import FitProgress
from skol_spark.nn.trained_network import TrainedNetwork

__all__ = ["FitRequest", "FitResult", "InitialNetwork", "fit_network"]

logger = logging.getLogger("skol_spark")

# The fewest workers that train on the executors. Benchmarks and tests lower it to 1 to time the
# data-parallel path on one worker (weak scaling); numWorkers=1 is otherwise the driver fit.
DATA_PARALLEL_FROM = 2
# How row-sparse steps exchange the projection's kernel rows ("gather" or "dense"); None lets the
# workers choose (fit/distributed/sparse_steps.py). Benchmarks force each to time both.
ROW_SPARSE_EXCHANGE: str | None = None


@dataclass(frozen=True)
class InitialNetwork:
    """A warm start: a fitted network and what it was trained for."""

    network: TrainedNetwork
    num_features: int
    labels: list[str]
    output_layer: str
    shape: dict[str, int]  # hiddenSize, embeddingSize, ensembleSize, numLayers


@dataclass(frozen=True)
class FitRequest:
    """Everything a fit needs, read off the estimator's Params (defaults and rules applied).

    ``training`` holds the :class:`~skol_spark.fit.training.TrainingConfig`
    fields that do not depend on the data; ``params`` the Params by name, for
    MLflow.
    """

    columns: tuple[str, str, str, str]  # document, position, label, features
    labels: list[str] | None
    training: dict[str, Any]
    weight_strategy: str
    class_weights: dict[str, float] | None
    effective_number_beta: float
    handle_invalid: str
    use_gpu: bool
    num_workers: int
    tune_thresholds: bool
    thresholds: list[float] | None
    mlflow_logging: bool
    verbose: bool
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)
    initial: InitialNetwork | None = field(default=None, repr=False)
    training_engine: str = "auto"  # a driver fit's: "auto", "tensorflow" or "jax" (fit.jax_driver)


@dataclass(frozen=True)
class FitResult:
    """What a fit produced."""

    labels: list[str]
    num_features: int
    class_weights: list[float]
    history: dict[str, list[float]]
    network: TrainedNetwork
    thresholds: list[float] | None = None


def fit_network(dataset: Any, request: FitRequest) -> FitResult:
    """Train on ``dataset`` as ``request`` says; see the module docstring for the steps."""
    labels, total = label_values(dataset, request.columns[2], request.labels)
    if request.thresholds is not None:
        check_thresholds(request.thresholds, len(labels))
    width = expected_width(dataset, request)
    progress = FitProgress(request.verbose, request.training["epochs"], request.training["ensemble_size"])
    if request.num_workers >= DATA_PARALLEL_FROM:
        result = _fit_on_executors(dataset, request, labels, width, progress)
    else:
        result = _fit_on_driver(dataset, request, labels, total, width, progress)
    if request.mlflow_logging:
        from skol_spark.fit.tracking import log_fit

        log_fit(request.params, result.history, result.labels, result.class_weights)
    return result


def _labels_from_metadata(schema: Any, label_col: str) -> list[str] | None:
    """Class names StringIndexer left in the label column's ML attributes."""
    attrs = schema[label_col].metadata.get("ml_attr", {})
    values = attrs.get("vals")
    return [str(v) for v in values] if values else None


def label_values(dataset: Any, label_col: str, labels: list[str] | None) -> tuple[list[str], int]:
    """Class names and the number of rows, from one aggregation of the label column.

    Only labels that can be class indices count here; every row is checked
    (once, with the other defects of :mod:`skol_spark.core.invalid`) while it
    is streamed to the driver.
    """
    from pyspark.sql import functions as F

    rows = dataset.groupBy(F.col(f"`{label_col}`")).agg(F.count(F.lit(1)).alias("count")).collect()
    total = sum(int(row["count"]) for row in rows)
    if not total:
        raise ValueError("The training DataFrame is empty: fit needs labelled rows.")
    indices = [
        int(v) for v in (row[0] for row in rows)
        if v is not None and not math.isnan(v) and v >= 0 and float(v) == int(v)
    ]
    if labels is None:
        labels = _labels_from_metadata(dataset.schema, label_col) or [
            str(i) for i in range(max(indices, default=-1) + 1)
        ]
    if not labels:
        raise ValueError(f"Column {label_col!r} has no valid class index; nothing to fit on.")
    return labels, total


def expected_width(dataset: Any, request: FitRequest) -> int | None:
    """Feature length fit must see: the initial network's, else the column's ML metadata."""
    if request.initial is not None:
        return request.initial.num_features
    attrs = dataset.schema[request.columns[3]].metadata.get("ml_attr", {})
    size = attrs.get("num_attrs")
    return int(size) if isinstance(size, int) and size > 0 else None


def initial_weights(request: FitRequest, num_features: int, labels: list[str]) -> list[Any] | None:
    """The warm-start weights (None without one), after checking they fit this training."""
    initial = request.initial
    if initial is None:
        return None
    if initial.num_features != num_features or len(initial.labels) != len(labels):
        raise ValueError(
            f"initialModel was trained on {initial.num_features} features and "
            f"{len(initial.labels)} classes; this data has {num_features} features and "
            f"{len(labels)} classes ({labels}). Warm-start only from a model of the same task."
        )
    output_layer = request.training["output_layer"]
    if initial.output_layer != output_layer:
        raise ValueError(
            f"initialModel has outputLayer={initial.output_layer!r}; this estimator has "
            f"outputLayer={output_layer!r}. Set them equal to warm-start."
        )
    ours = {
        "hiddenSize": request.training["hidden_size"],
        "embeddingSize": request.training["embedding_size"],
        "ensembleSize": request.training["ensemble_size"],
        "numLayers": request.training["num_layers"],
    }
    theirs = {name: initial.shape[name] for name in ours}
    if theirs != ours:
        raise ValueError(
            "initialModel has "
            + ", ".join(f"{name}={value}" for name, value in theirs.items())
            + "; this estimator has "
            + ", ".join(f"{name}={value}" for name, value in ours.items())
            + ". Set them equal to warm-start."
        )
    return initial.network.weight_arrays()


def _log_class_weights(labels: list[str], class_weights: list[float], counts: list[int]) -> None:
    logger.info(
        "class weights: %s",
        ", ".join(f"{name}={w:.4g} (n={n})" for name, w, n in zip(labels, class_weights, counts)),
    )


def _driver_gpu_addresses(dataset: Any) -> list[str]:
    """GPUs Spark assigned to the driver (spark.driver.resource.gpu.*); none under Spark Connect."""
    from skol_spark.core.devices import gpu_addresses

    try:
        resources = dataset.sparkSession.sparkContext.resources
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return []
    return gpu_addresses(resources)


def _fit_on_driver(
    dataset: Any, request: FitRequest, labels: list[str], total: int, width: int | None, progress: FitProgress
) -> FitResult:
    """Collect the four columns once, train with Keras on the driver (on TensorFlow here, or on JAX in a
    child process: fit.jax_driver), check the rebuild."""
    from skol_spark.fit.jax_driver import JaxFit, choose_engine, estimated_steps

    engine = choose_engine(
        request.training_engine, output_layer=request.training["output_layer"], use_gpu=request.use_gpu,
        steps=estimated_steps(total, request.training),
    )
    if engine == "jax":  # started first: its imports overlap the collect
        jax_fit = JaxFit(request, labels, progress, initial_weights(request, width, labels))
        try:
            return _fit_on_driver_with(dataset, request, labels, total, width, progress, jax_fit)
        finally:
            jax_fit.close()
    return _fit_on_driver_with(dataset, request, labels, total, width, progress, None)


def _fit_on_driver_with(
    dataset: Any, request: FitRequest, labels: list[str], total: int, width: int | None, progress: FitProgress,
    jax_fit: Any,
) -> FitResult:
    from skol_spark.core.devices import training_device
    from skol_spark.fit.training import TrainingConfig, train_network, validation_thresholds, verify_rebuild
    from skol_spark.fit.training_data import collect_training_data

    data = collect_training_data(
        dataset,
        *request.columns,
        expected_rows=total,
        handle_invalid=request.handle_invalid,
        width=width,
        num_classes=len(labels),
    )
    logger.info(
        "training rows on the driver: %d x %d, %s storage, %.1f MB",
        len(data.labels),
        data.num_features,
        "sparse" if data.features.is_sparse else "dense",
        data.features.nbytes / 2**20,
    )
    counts = np.bincount(data.labels, minlength=len(labels)).tolist()
    class_weights = resolve_class_weights(
        counts, labels, request.weight_strategy, request.class_weights, request.effective_number_beta
    )
    _log_class_weights(labels, class_weights, counts)
    config = TrainingConfig(
        **request.training,
        num_classes=len(labels),
        class_weights=class_weights,
        initial_weights=initial_weights(request, data.num_features, labels),
    )
    progress.start(
        f"{len(data.labels):,} rows x {data.num_features:,} features, {len(labels)} classes, on the driver"
        + (" (JAX)" if jax_fit is not None else "")
    )
    if jax_fit is not None:
        result = jax_fit.train(data, config)
        tuned = validation_thresholds(result.model, data, config) if request.tune_thresholds else None
        return FitResult(labels, data.num_features, result.class_weights, result.history, result.network, tuned)
    with training_device(request.use_gpu, _driver_gpu_addresses(dataset)):
        network, history = train_network(data, config, progress)
        trained = verify_rebuild(network, data, config.window_size)
        tuned = validation_thresholds(network, data, config) if request.tune_thresholds else None
    return FitResult(labels, data.num_features, class_weights, history, trained, tuned)


def _fit_on_executors(
    dataset: Any, request: FitRequest, labels: list[str], width: int | None, progress: FitProgress
) -> FitResult:
    """numWorkers > 1: data-parallel training in one barrier stage (``fit.distributed``)."""
    from skol_spark.fit.distributed.stage import DistributedSpec, fit_on_executors
    from skol_spark.nn.trained_network import weights_to_bytes

    # Check the explicit weights' keys name labels before the stage starts.
    resolve_class_weights([1] * len(labels), labels, request.weight_strategy, request.class_weights)
    initial = initial_weights(request, width, labels) if request.initial is not None else None
    spec = DistributedSpec(
        num_workers=request.num_workers,
        columns=request.columns,
        labels=labels,
        config={**request.training, "num_classes": len(labels), "class_weights": []},
        handle_invalid=request.handle_invalid,
        width=width,
        weight_strategy=request.weight_strategy,
        class_weights=request.class_weights,
        effective_number_beta=request.effective_number_beta,
        initial_weights=None if initial is None else weights_to_bytes(initial),
        row_sparse_exchange=ROW_SPARSE_EXCHANGE,
    )
    progress.start(f"{len(labels)} classes, data-parallel on {request.num_workers} executor tasks")
    fit = fit_on_executors(dataset, spec, progress)
    _log_class_weights(labels, fit.class_weights, fit.counts)
    return FitResult(labels, fit.num_features, fit.class_weights, fit.history, fit.network)
