"""The module map of DEVELOPERS.md, checked against the imports (lazy ones included).

Imports flow one way: errors -> core -> params -> driver | executor | stores
-> estimator -> entry points. A module imports only from its own group or a
lower layer; the three groups of the middle layer never import each other.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skol_spark"

# module -> (layer, group); DEVELOPERS.md "Module map" lists the same.
MODULE_MAP = {
    "errors": (0, "errors"),
    **{m: (1, "core") for m in (
        "vectors", "windows", "invalid", "class_weights", "crf", "network", "projection", "trained_network",
        "devices", "yedda", "thresholds",
    )},
    **{m: (2, "params") for m in ("params", "connect", "compat")},
    **{m: (3, "driver") for m in (
        "spark_collect", "training_data", "training", "sparse_training", "tracking", "distributed",
        "distributed_worker",
    )},
    **{m: (3, "executor") for m in ("predict", "udf")},
    **{m: (3, "stores") for m in ("persistence", "stores", "keras_files")},
    "estimator": (4, "stages"),
    **{m: (5, "entry points") for m in (
        "datasets", "evaluation", "text_pipeline", "crf_baseline", "journals", "jobs", "cli", "submit", "__main__",
        "__init__",
    )},
}


def _imports(module: str) -> set[str]:
    """skol_spark modules ``module`` imports anywhere in its source (top level or inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "skol_spark":
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
            elif node.module.startswith("skol_spark."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("skol_spark.")}
    return found - {module}


def test_every_module_is_on_the_map():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == set(MODULE_MAP), "add new modules to MODULE_MAP and DEVELOPERS.md"


@pytest.mark.parametrize("module", sorted(MODULE_MAP))
def test_imports_flow_down_the_layers(module):
    layer, group = MODULE_MAP[module]
    for imported in _imports(module):
        their_layer, their_group = MODULE_MAP[imported]
        assert their_layer < layer or their_group == group, (
            f"skol_spark.{module} ({group}) imports skol_spark.{imported} ({their_group})"
        )


def test_no_import_cycles():
    graph = {m: _imports(m) for m in MODULE_MAP}
    visiting, done = set(), set()

    def visit(module, path):
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join(path + [module])
        visiting.add(module)
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_developers_md_lists_the_same_map():
    text = (PACKAGE.parent / "DEVELOPERS.md").read_text()
    missing = [m for m in MODULE_MAP if m not in ("__init__", "__main__") and f"`{m}.py`" not in text]
    assert not missing, f"DEVELOPERS.md's module map lacks {missing}"
