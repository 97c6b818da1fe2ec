"""The wheel: pyspark and TensorFlow are extras, so installing never replaces a runtime's own.

Offline: the wheel is built without build isolation, and installed with
``--no-index`` into a venv that sees this interpreter's site-packages (pyspark
among them) through a ``.pth`` file, as a Spark runtime's Python would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pip(*args, cwd):
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, cwd=cwd,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_wheel_installs_without_touching_pyspark(tmp_path):
    import pyspark

    source = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(ROOT / "skol_spark", source / "skol_spark", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(source),
         cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("skol_spark-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith("/METADATA"))).decode()
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
        assert "skol_spark/cli/log4j2.properties" in archive.namelist()  # the command line's Spark log settings
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert 'pyspark>=3.5; extra == "spark"' in requires
    assert 'tensorflow>=2.16; extra == "tensorflow"' in requires
    assert not [r for r in requires if r.startswith(("pyspark", "tensorflow")) and "extra ==" not in r]
    assert "skol-spark = skol_spark.cli.main:main" in entry_points

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This interpreter's packages behind the venv's own, as a runtime's preinstalled ones.
    inner = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    Path(inner, "runtime.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    report = tmp_path / "report.json"
    _pip("--python", str(python), "install", "--no-index", "--dry-run", "--report", str(report),
         f"{wheel}[spark,tensorflow]", cwd=tmp_path)
    planned = [item["metadata"]["name"].replace("-", "_") for item in json.loads(report.read_text())["install"]]
    assert planned == ["skol_spark"]  # every dependency, pyspark included, is left as it is
    _pip("--python", str(python), "install", "--no-index", str(wheel), cwd=tmp_path)
    probe = ("import pyspark, skol_spark, skol_spark.cli.main; "
             "print(pyspark.__version__, skol_spark.__file__)")
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    version, location = done.stdout.split()
    assert version == pyspark.__version__
    assert location.startswith(str(venv))
    script = subprocess.run([str(venv / "bin" / "skol-spark"), "evaluate", "--help"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert script.returncode == 0 and "--json" in script.stdout and script.stdout.startswith("usage: skol-spark")
