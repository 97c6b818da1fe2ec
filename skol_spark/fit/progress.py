"""What a fit shows while it trains, on the driver.

Every epoch is a record on the ``skol_spark.progress`` logger (INFO), for
applications that configure logging. With the estimator's ``verbose`` Param
(the default), the same progress is also written to ``sys.stderr``, so a
notebook or a terminal shows it without any logging set-up:

* one line when training starts (networks, epochs, rows, classes);
* one line per epoch for a single network;
* for an ensemble, one line per member once it has trained (its epochs, first
  and last loss, best validation macro-F1), and, when the stream is a
  terminal or a notebook, that member's current epoch on one line rewritten
  in place.

Nothing here configures logging or touches process-wide state.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

__all__ = ["FitProgress", "format_metrics"]

logger = logging.getLogger("skol_spark.progress")


def format_metrics(logs: Mapping[str, Any]) -> str:
    """``loss=0.8568 val_macro_f1=0.7112``: the metrics of one epoch, sorted by name."""
    return " ".join(f"{k}={float(v):.4f}" for k, v in sorted(logs.items()))


def _interactive(stream: Any) -> bool:
    """Whether a line can be rewritten in place: a terminal, or a Jupyter kernel's stream."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class FitProgress:
    """Progress of one fit: ``epochs`` epochs of ``networks`` networks trained one after the other.

    Parameters
    ----------
    verbose : bool
        Also write the progress to ``stream`` (else only log it).
    epochs, networks : int
        What the fit trains.
    stream : text stream, optional
        Where the lines go; ``sys.stderr`` at the time each line is written.
    """

    def __init__(self, verbose: bool, epochs: int, networks: int = 1, stream: TextIO | None = None):
        self.verbose, self.epochs, self.networks = verbose, epochs, networks
        self._stream = stream
        self._started = time.monotonic()
        self._partial = 0  # width of an epoch line rewritten in place and not yet ended

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def _write(self, line: str, *, in_place: bool = False) -> None:
        if not self.verbose:
            return
        text = ("\r" + line.ljust(self._partial)) if (in_place or self._partial) else line
        try:
            self.stream.write(text if in_place else text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream never fails the fit
            return
        self._partial = max(len(line), self._partial) if in_place else 0

    def start(self, on: str) -> None:
        """The line before the first epoch: what is trained, ``on`` what (rows, classes, where)."""
        what = "1 network" if self.networks == 1 else f"an ensemble of {self.networks} networks"
        epochs = "1 epoch" if self.epochs == 1 else f"{self.epochs} epochs"
        self.line(f"training {what}, {epochs}, on {on}")
        self._started = time.monotonic()

    def line(self, text: str) -> None:
        """One line of progress (logged, and written when verbose)."""
        logger.info(text)
        self._write(text)

    def epoch(self, epoch: int, logs: Mapping[str, Any], network: int = 0) -> None:
        """Epoch ``epoch`` (0-based) of network ``network`` (0-based) ended with these metrics."""
        metrics = format_metrics(logs)
        logger.info("epoch %d/%d %s", epoch + 1, self.epochs, metrics)
        elapsed = time.monotonic() - self._started
        if self.networks == 1:
            self._write(f"epoch {epoch + 1}/{self.epochs} {metrics} ({elapsed:.0f} s)")
        elif _interactive(self.stream):
            self._write(
                f"network {network + 1}/{self.networks} epoch {epoch + 1}/{self.epochs} {metrics}", in_place=True
            )

    def network_done(self, network: int, history: Mapping[str, Sequence[float]]) -> None:
        """An ensemble member finished: one line summing up its epochs."""
        if self.networks == 1:
            return
        loss = list(history.get("loss", []))
        parts = [f"network {network + 1}/{self.networks}: {len(loss)} epoch{'' if len(loss) == 1 else 's'}"]
        if loss:
            parts.append(f"loss {loss[0]:.4f} -> {loss[-1]:.4f}")
        f1 = list(history.get("val_macro_f1", []))
        if f1:
            best = max(range(len(f1)), key=f1.__getitem__)
            parts.append(f"val_macro_f1 {f1[-1]:.4f} (best {f1[best]:.4f} at epoch {best + 1})")
        self.line(", ".join(parts) + f" ({time.monotonic() - self._started:.0f} s)")
