"""The command line: ``python -m skol_spark`` and ``skol-spark`` (``main``), and its jobs."""

from skol_spark.cli.main import main

__all__ = ["main"]
