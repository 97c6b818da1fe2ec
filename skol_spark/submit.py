"""The job file for spark-submit: the ``skol-spark`` commands in the session spark-submit made.

    spark-submit --master yarn --py-files skol_spark.zip \\
        "$(python -c 'import skol_spark.submit as s; print(s.__file__)')" \\
        train --input hdfs:///corpus.parquet --model hdfs:///models/skol + \\
        evaluate --input hdfs:///test.parquet --model hdfs:///models/skol

Spark's own options (``--master``, ``--conf``, ``--py-files``) go before this
file; the session is taken as spark-submit configured it, never with a master
of its own, so the commands' ``--master`` is ignored here. The command line
sets Spark's log level to WARN as the session starts (``spark.log.level``)
unless ``--conf`` sets it; spark-submit's own start-up lines come before: pass
``--driver-java-options -Dlog4j2.configurationFile=...`` (README) to quiet them.
"""

from __future__ import annotations

import os
import sys


def _fix_path() -> None:
    """Run as a script, Python puts this package's own directory first on sys.path, where its
    modules would shadow top-level ones (``datasets``); put the package's parent there instead."""
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == here:
        sys.path[0] = os.path.dirname(here)


def main() -> int:
    from pyspark.sql import SparkSession

    from skol_spark.cli.main import main as cli_main

    try:
        return cli_main(sys.argv[1:], prog="spark-submit skol_spark/submit.py")
    finally:
        spark = SparkSession.getActiveSession()
        if spark is not None:
            spark.stop()


if __name__ == "__main__":
    _fix_path()
    sys.exit(main())
