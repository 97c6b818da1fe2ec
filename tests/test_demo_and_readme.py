"""The README's promises: its quick start runs as written, and the main job shows the BiLSTM winning."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_example_runs(tmp_path):
    """The first python block (the quick start) in a fresh process, as a user runs it: its own
    SparkSession, the venv's interpreter from a venv that is not activated (its bin is not on the
    PATH, so a worker started as 'python3' would lack skol_spark), no PYSPARK_PYTHON, so the example
    must set the workers' Python itself, and no logging set-up, yet fit shows its epochs."""
    example = _python_blocks(README.read_text())[0]
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    done = subprocess.run(
        [sys.executable, "-c", example], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert re.search(r"^macro-F1\s+\d\.\d{4}\s+\d+$", done.stdout, flags=re.M), done.stdout[-4000:]
    # Training progress, without any logging set-up: one line per epoch on stderr.
    epochs = re.findall(r"^epoch (\d)/5 loss=\d\.\d{4}", done.stderr, flags=re.M)
    assert epochs == ["1", "2", "3", "4", "5"], done.stderr[-4000:]


def test_demo_prints_report_and_bilstm_beats_per_line_logistic_regression(spark):
    from skol_spark.cli.demo import run_demo

    out = io.StringIO()
    result = run_demo(spark, num_docs=60, epochs=6, seed=3, out=out)
    text = out.getvalue()
    for label in ("Misc-exposition", "Nomenclature", "Description", "macro-F1", "accuracy"):
        assert label in text
    assert result["bilstm"].macro_f1 > result["baseline"].macro_f1


def test_cli_help_and_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "skol_spark", "demo", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--epochs" in done.stdout
    top = subprocess.run([sys.executable, "-m", "skol_spark", "--help"], capture_output=True, text=True)
    assert top.returncode == 0 and "python -m skol_spark (or skol-spark)" in top.stdout and "``" not in top.stdout
    bad = subprocess.run([sys.executable, "-m", "skol_spark", "demo", "--epochs", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid int value" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "skol_spark", "journals", "--data", "/no/such/dir"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "--data '/no/such/dir' is not a directory" in missing.stderr


@pytest.mark.parametrize("target, extras", [("demo", "spark,tensorflow"), ("test", "test")])
def test_make_installs_what_its_target_needs(tmp_path, target, extras):
    """make demo installs pyspark and TensorFlow only; the test stack comes with make test."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"  # absent, so make shows the whole set-up
    done = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    installs = [line for line in done.stdout.splitlines() if "pip install" in line and " -e " in line]
    assert installs == [f'{venv}/bin/python -m pip install --quiet -e ".[{extras}]"'], done.stdout
