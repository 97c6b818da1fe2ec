"""What the command line prints: its results, fit's progress, warnings, and no start-up noise.

The command line is an application, so it configures its own process and the
Spark session it starts (the library never does):

* Python logging: warnings on stderr; with ``--verbose`` also skol_spark's
  INFO records (the epochs excepted: fit's ``verbose`` prints them already).
  py4j's and TensorFlow's Python loggers stay at WARNING and ERROR.
* TensorFlow's C++ logging: ``TF_CPP_MIN_LOG_LEVEL=3`` for this process and,
  through ``spark.executorEnv``, the Python workers, unless the user set it
  (then theirs goes to the workers) or passed ``--verbose``. TensorFlow writes
  a few lines (the oneDNN notice, ``cudart_stub``) through absl before it
  reads that variable, so while the JVM starts and TensorFlow loads, the
  process's stderr goes through a filter dropping the JVM's incubator-module
  notice and, when the level is ours, absl's INFO and WARNING lines; the JVM
  and its local Python workers keep writing through it.
* Spark at WARN (``spark.log.level``), without its console progress bar; a
  session the command line starts also gets ``log4j2.properties`` from this
  package (the task-failure reports that repeat the error the command prints,
  with their Java stack traces, left out), unless the user has a log4j2
  configuration or driver Java options of their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Output", "LOG4J2_PROPERTIES"]

LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")
TF_LEVEL = "TF_CPP_MIN_LOG_LEVEL"

# absl's INFO and WARNING lines (I0000 00:00:1796490623.090028 11543 port.cc:153] ...), its banner for lines
# written before absl::InitializeLog(), and TensorFlow's continuation of its CPU-instructions notice.
_TENSORFLOW = re.compile(
    r"^([IW]\d{4} [\d:.]+\s+\d+ [\w.\-/]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow)"
)
# The JVM's notice that Spark uses an incubating module.
_JVM = re.compile(r"^WARNING: Using incubator modules: ")


def is_noise(line: str, tensorflow: bool = True) -> bool:
    """Whether a stderr line is start-up noise the quiet command line drops (TensorFlow's: if ``tensorflow``)."""
    return _JVM.match(line) is not None or (tensorflow and _TENSORFLOW.match(line) is not None)


class _StderrFilter:
    """File descriptor 2 through a pipe whose lines are copied to the real stderr, noise dropped.

    Processes started while it is attached inherit the pipe and keep it; the
    copying thread runs as long as this process does.
    """

    def __init__(self, drop: Callable[[str], bool]) -> None:
        self.drop = drop
        self.real = os.dup(2)
        read, self.pipe = os.pipe()
        threading.Thread(target=self._copy, args=(read,), daemon=True, name="skol-stderr").start()

    def _copy(self, read: int) -> None:
        with os.fdopen(read, "rb") as lines:
            for line in lines:
                if self.drop(line.decode("utf-8", "replace")):
                    continue
                with contextlib.suppress(OSError):  # keep draining, so that writers never block
                    os.write(self.real, line)

    @contextmanager
    def attached(self) -> Iterator[None]:
        sys.stderr.flush()
        os.dup2(self.pipe, 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(self.real, 2)


class Output:
    """The command line's output settings for this process, from ``--verbose``."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.quiet_tensorflow = False  # whether the command line, not the user, set TensorFlow's level
        self._filter: _StderrFilter | None = None

    def configure_process(self) -> None:
        """Logging and TensorFlow's C++ log level for this process, before Spark or TensorFlow start.

        Logging is configured only if the application has not done it (``logging.basicConfig``).
        """
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(name)s %(message)s" if self.verbose else "%(levelname)s %(name)s: %(message)s"
        ))
        handler.addFilter(lambda record: not record.name.startswith("skol_spark.progress"))
        logging.basicConfig(level=logging.WARNING, handlers=[handler])
        logging.getLogger("py4j").setLevel(logging.WARNING)
        if self.verbose:
            logging.getLogger("skol_spark").setLevel(logging.INFO)
            return
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.quiet_tensorflow = TF_LEVEL not in os.environ
        os.environ.setdefault(TF_LEVEL, "3")

    @contextmanager
    def starting(self) -> Iterator[None]:
        """Around starting the JVM and importing TensorFlow: their noise goes through the filter."""
        if self.verbose:
            yield
            return
        if self._filter is None:
            tensorflow = self.quiet_tensorflow
            self._filter = _StderrFilter(lambda line: is_noise(line, tensorflow))
        with self._filter.attached():
            yield

    def session_conf(self, new_jvm: bool) -> dict[str, str]:
        """Spark settings for the session the command line starts (``new_jvm``: it also starts the JVM)."""
        if self.verbose:
            return {}
        conf = {"spark.log.level": "WARN", "spark.ui.showConsoleProgress": "false"}
        if TF_LEVEL in os.environ:
            conf[f"spark.executorEnv.{TF_LEVEL}"] = os.environ[TF_LEVEL]
        if new_jvm and not _user_logging_configured():
            conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}"
        return conf


def _user_logging_configured() -> bool:
    """Whether Spark's conf directory holds a log4j2 configuration or driver Java options of the user's."""
    home = os.environ.get("SPARK_HOME")
    if home is None:
        import pyspark

        home = os.path.dirname(pyspark.__file__)
    conf_dir = Path(os.environ.get("SPARK_CONF_DIR") or os.path.join(home, "conf"))
    if any((conf_dir / name).exists() for name in ("log4j2.properties", "log4j2.xml", "log4j2.yaml")):
        return True
    defaults = conf_dir / "spark-defaults.conf"
    return defaults.exists() and "spark.driver.extraJavaOptions" in defaults.read_text(errors="replace")
