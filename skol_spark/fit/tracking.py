"""Driver side: what ``fit`` records in the active MLflow run, when there is one.

MLflow is optional and never imported here: a process that has not imported
``mlflow`` cannot have an active run, so a fit without MLflow pays nothing.
No run is started. A failure to log never fails the fit; it is warned about
once and the rest of that fit's logging is skipped.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["log_fit"]

logger = logging.getLogger("skol_spark")

# The class weights artifact, in the run's artifact root.
CLASS_WEIGHTS_ARTIFACT = "class_weights.json"


def _active_mlflow() -> Any:
    """The ``mlflow`` module when it is imported and has an active run, else None."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or not hasattr(mlflow, "active_run"):
        return None
    try:
        return mlflow if mlflow.active_run() is not None else None
    except Exception as exc:  # noqa: BLE001 - a broken MLflow must not fail the fit
        logger.warning("MLflow logging skipped: mlflow.active_run() failed: %s", exc)
        return None


def _param_value(value: Any) -> str:
    if hasattr(value, "uid"):  # a stage, e.g. initialModel: its uid stands for it
        return str(value.uid)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def log_fit(
    params: Mapping[str, Any],
    history: Mapping[str, Sequence[float]],
    labels: Sequence[str],
    class_weights: Sequence[float],
) -> bool:
    """Log one fit to the active MLflow run; True when it was logged.

    ``params`` are the estimator's Params by name (set or default), logged as
    run params; ``history`` the per-epoch metrics, logged with ``step`` = the
    1-based epoch (as in the log lines and ``best_epoch``); ``best_epoch``,
    one value, is logged once without a step. The class weights training used
    go to the ``class_weights.json`` artifact as ``{label: weight}``.
    """
    mlflow = _active_mlflow()
    if mlflow is None:
        return False
    per_epoch = {k: v for k, v in history.items() if k != "best_epoch"}
    epochs = max((len(v) for v in per_epoch.values()), default=0)
    steps = [
        ("params", lambda: mlflow.log_params({k: _param_value(v) for k, v in params.items()})),
        *[
            (
                f"epoch {e + 1} metrics",
                lambda e=e: mlflow.log_metrics(
                    {k: float(v[e]) for k, v in per_epoch.items() if e < len(v)}, step=e + 1
                ),
            )
            for e in range(epochs)
        ],
        (
            "class weights",
            lambda: mlflow.log_dict(
                {str(label): float(w) for label, w in zip(labels, class_weights)}, CLASS_WEIGHTS_ARTIFACT
            ),
        ),
    ]
    if "best_epoch" in history:
        steps.append(("best_epoch", lambda: mlflow.log_metric("best_epoch", float(history["best_epoch"][0]))))
    for what, log in steps:
        try:
            log()
        except Exception as exc:  # noqa: BLE001 - tracking must never fail a fit
            logger.warning(
                "MLflow logging stopped at the %s (the fit itself is unaffected): %s: %s. "
                "Set mlflowLogging=False to skip MLflow logging.",
                what, type(exc).__name__, exc,
            )
            return False
    return True
