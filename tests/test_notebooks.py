"""The notebooks run top to bottom in a kernel of this interpreter, and are committed clean.

Each notebook's kernel starts its own local Spark (its own JVM), imports this
checkout (PYTHONPATH) and runs Spark's Python workers on this interpreter.
"""

import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import SHARED_DATA

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ROOT = NOTEBOOKS.parent
KERNEL = "skol-spark-test"


def test_committed_notebooks_have_no_outputs():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [p.name for p in paths] == ["quickstart.ipynb", "skol_real_data.ipynb"]
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name} cell {index} has outputs; clear them before committing "
                    "(jupyter nbconvert --clear-output --inplace notebooks/*.ipynb)"
                )


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    """A kernel spec running this interpreter, whatever 'python3' means on this machine."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name=KERNEL, prefix=str(prefix))
    return prefix / "share" / "jupyter"


def _run(path, kernel_dir, monkeypatch, **env):
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    notebook = nbformat.read(path, as_version=4)
    kernel_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        **env,
    }
    client = NotebookClient(
        notebook, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute(env=kernel_env)
    return notebook


def _text(notebook):
    return "".join(
        output.get("text", "") + "".join(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def _images(notebook):
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


@pytest.mark.slow
def test_quickstart_runs_with_redis(kernel_dir, redis_url, monkeypatch):
    notebook = _run(NOTEBOOKS / "quickstart.ipynb", kernel_dir, monkeypatch, SKOL_REDIS_URL=redis_url)
    text = _text(notebook)
    assert f"Python {sys.executable}," in text
    assert "macro-F1" in text and "Nomenclature" in text
    assert "the loaded model predicts the same" in text
    assert "saved to Redis under skol:quickstart" in text
    if importlib.util.find_spec("mlflow") is None:
        assert "mlflow is not installed: skipping the MLflow round trip." in text
    else:
        assert "signature inputs: ['doc_id', 'line_number'" in text and "'features'" in text
        assert "logged to MLflow as runs:/" in text and "the loaded model predicts the same" in text
    assert _images(notebook) == 2  # training curves, confusion matrix
    # fit's progress, with no logging set up in the notebook: stderr lines in the cell's output.
    stderr = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.outputs if output.get("name") == "stderr")
    assert "training 1 network, " in stderr and "epoch 1/" in stderr, stderr[-2000:]


@pytest.mark.skipif(
    not (SHARED_DATA / "journals").is_dir(),
    reason=f"SKOL annotated journals not found at {SHARED_DATA} (../shared is absent)",
)
@pytest.mark.slow
def test_real_data_notebook_runs(kernel_dir, monkeypatch):
    # The notebook's default data path, relative to the notebook, is the one tested.
    notebook = _run(NOTEBOOKS / "skol_real_data.ipynb", kernel_dir, monkeypatch, SKOL_DATA="")
    text = _text(notebook)
    assert "macro-F1 gain" in text and "LogisticRegression" in text
    assert "F1 Nomenclature" in text
