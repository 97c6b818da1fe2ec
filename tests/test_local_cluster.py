"""Several executors: local-cluster[2,1,1024] whose Python does not have skol_spark installed.

The executors' interpreter is this venv's Python without skol_spark
(``conftest.python_without_skol_spark``: ``-S``, the venv's site-packages on
``PYTHONPATH``). skol_spark
reaches the driver and executors only as a zip, both ways README's cluster
recipe gives: ``--py-files`` of pyspark's own ``bin/spark-submit``, or
``spark.sparkContext.addPyFile`` in the running session (the job imports
skol_spark only after that call). The --py-files run also fits numWorkers=2
there: one cluster start for both the driver fit and the data-parallel one.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import python_without_skol_spark

ROOT = Path(__file__).resolve().parents[1]


def _spark_home(tmp_path: Path) -> Path:
    """pyspark's package directory, linked into a temp dir: local-cluster writes SPARK_HOME/work."""
    import pyspark

    package = Path(pyspark.__file__).parent
    home = tmp_path / "spark-home"
    home.mkdir()
    for name in ("bin", "jars", "python", "conf", "sbin"):
        if (package / name).exists():
            (home / name).symlink_to(package / name)
    return home


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """What both recipes share: (python without skol_spark, the zip, SPARK_HOME, env, dir)."""
    tmp_path = tmp_path_factory.mktemp("local-cluster")
    python = python_without_skol_spark(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    probe = subprocess.run([str(python), "-c", "import pyspark, keras; import skol_spark"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "No module named 'skol_spark'" in probe.stderr, probe.stderr  # but pyspark and keras load

    archive = tmp_path / "skol_spark.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (ROOT / "skol_spark").rglob("*.py"):
            zf.write(path, path.relative_to(ROOT))
    home = _spark_home(tmp_path)
    env.update(SPARK_HOME=str(home), PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python),
               TF_CPP_MIN_LOG_LEVEL="2")
    return archive, home, env, tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("shipping", ["--py-files", "addPyFile"])
def test_local_cluster_ships_the_zip_and_builds_once_per_worker(cluster, shipping):
    archive, home, env, tmp_path = cluster
    out = tmp_path / f"stats{shipping}.json"
    # --py-files: spark-submit ships the zip; addPyFile: the job's running session does.
    ship = ["--py-files", str(archive)] if shipping == "--py-files" else []
    job_args = ["--distributed"] if shipping == "--py-files" else [str(archive)]
    done = subprocess.run(
        [str(home / "bin" / "spark-submit"), "--master", "local-cluster[2,1,1024]",
         "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4",
         "--conf", "spark.driver.memory=1g", "--conf", "spark.locality.wait=0", *ship,
         str(ROOT / "tests" / "cluster_job.py"), str(out), *job_args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    stats = json.loads(out.read_text())
    assert stats["labelled"] == stats["rows"] > 0
    assert "skol_spark.zip" in stats["driver_package"]
    workers = stats["workers"]
    assert all("skol_spark.zip" in w["package"] for w in workers), workers
    assert {w["executor"] for w in workers} == {"0", "1"}, workers  # two executor JVMs
    built = {(w["executor"], w["pid"]): w["builds"] for w in workers}
    assert max(built.values()) == 1, built  # never rebuilt in a Python worker
    assert sum(built.values()) >= 1, built  # the workers that labelled are among them
    if shipping == "--py-files":
        # numWorkers=2 on one core per executor: the two barrier tasks (and their JAX processes)
        # run under the two executor JVMs, which have skol_spark only from the --py-files zip.
        parallel = stats["distributed"]
        assert parallel["labelled"] == stats["rows"]
        assert len(parallel["history"]["loss"]) == 2
        assert any("weight digests of all 2 ranks agree" in line for line in parallel["lines"]), parallel["lines"]
