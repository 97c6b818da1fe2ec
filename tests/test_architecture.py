"""The package map of DEVELOPERS.md, checked against the imports (lazy ones included).

Imports flow one way through the sub-packages:

    errors -> compat -> core -> nn -> fit | transform | stores -> stages -> skol -> cli

A module imports only from its own package or a lower layer; fit, transform
and stores never import each other. The pinned modules at the top of the
package (``estimator``, ``network``, ``crf``) and the entry points
(``__init__``, ``__main__``, ``submit``) sit above everything.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skol_spark"
MAX_LINES = 600

# package -> layer; DEVELOPERS.md's package map lists the same.
LAYERS = {
    "errors": 0,
    "compat": 1,
    "core": 2,
    "nn": 3,
    "fit": 4,
    "transform": 4,
    "stores": 4,
    "stages": 5,
    "skol": 6,
    "cli": 7,
    "pinned": 8,  # estimator.py, network.py, crf.py: import paths saved models record
    "entry": 8,  # __init__, __main__, submit
}
PINNED = {"estimator", "network", "crf"}
ENTRY = {"__init__", "__main__", "submit"}


def _package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if len(parts) > 1:
        return parts[0]
    name = parts[0]
    if name in PINNED:
        return "pinned"
    if name in ENTRY:
        return "entry"
    return name


def _modules() -> dict[str, Path]:
    """Dotted module name (without the ``skol_spark.`` prefix) -> file."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        dotted = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        found[dotted] = path
    return found


def _imports(path: Path) -> set[str]:
    """The skol_spark modules a file imports anywhere (top level or inside functions)."""
    modules = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("skol_spark"):
            base = node.module[len("skol_spark"):].lstrip(".")
            names = [f"{base}.{a.name}".lstrip(".") for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            names = [a.name[len("skol_spark."):] for a in node.names if a.name.startswith("skol_spark.")]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def test_every_module_belongs_to_a_known_package():
    unknown = sorted({_package_of(p) for p in _modules().values()} - set(LAYERS))
    assert not unknown, f"add {unknown} to LAYERS and to DEVELOPERS.md's package map"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_flow_down_the_layers(module):
    modules = _modules()
    own = _package_of(modules[module])
    for imported in _imports(modules[module]):
        theirs = _package_of(modules[imported])
        if theirs == "entry" and imported == "__init__":
            continue  # the package's own lazy names (SPARK_MISSING, __version__)
        assert LAYERS[theirs] < LAYERS[own] or theirs == own, (
            f"skol_spark.{module} ({own}) imports skol_spark.{imported} ({theirs})"
        )


def test_no_import_cycles_between_packages():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for path in modules.values():
        own = _package_of(path)
        graph.setdefault(own, set()).update(
            _package_of(modules[m]) for m in _imports(path) if _package_of(modules[m]) != own and m != "__init__"
        )
    visiting, done = set(), set()

    def visit(package, path):
        if package in done:
            return
        assert package not in visiting, "import cycle: " + " -> ".join(path + [package])
        visiting.add(package)
        for imported in sorted(graph.get(package, ())):
            visit(imported, path + [package])
        visiting.discard(package)
        done.add(package)

    for package in sorted(graph):
        visit(package, [])


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_is_over_600_lines(module):
    lines = len(_modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"skol_spark/{module.replace('.', '/')}.py has {lines} lines; split it by job"


def test_the_pinned_modules_only_reexport():
    for name in PINNED:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        kinds = {type(node).__name__ for node in tree.body}
        assert kinds <= {"Expr", "ImportFrom", "Assign"}, f"skol_spark/{name}.py should only re-export ({kinds})"


def test_developers_md_lists_every_package():
    text = (PACKAGE.parent / "DEVELOPERS.md").read_text()
    missing = [p for p in LAYERS if p not in ("pinned", "entry") and f"`{p}/`" not in text and f"`{p}.py`" not in text]
    assert not missing, f"DEVELOPERS.md's package map lacks {missing}"
