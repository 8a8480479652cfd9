"""The package's import graph: no cycles between modules, the layers of pyproject.toml kept.

The layers are declared once, as import-linter contracts in pyproject.toml (see
docs/architecture.md); ``.ci/run`` runs ``lint-imports`` and this file runs it too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycles_between_modules() -> None:
    """No module of rankopt reaches itself again through its imports (grimp's graph counts
    imports inside functions and under TYPE_CHECKING too)."""
    grimp = pytest.importorskip("grimp", reason="grimp (the 'dev' extra) is missing")
    graph = grimp.build_graph("rankopt", cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
    # Not vacuous: the graph holds the rooms and their modules.
    assert {"rankopt.latency._table", "rankopt.storage._open", "rankopt.searching.loop._run"} <= (
        graph.modules
    )


def test_no_import_cycles_in_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    """No module of benchmarks/ reaches itself through its imports either (TYPE_CHECKING
    imports count: the MNIST result dataclass lives in its own module for that)."""
    grimp = pytest.importorskip("grimp", reason="grimp (the 'dev' extra) is missing")
    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks/ is a package of the checkout
    graph = grimp.build_graph("benchmarks", cache_dir=None)
    cycles = [
        " -> ".join((module, *back))
        for module in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(module))
        if (back := graph.find_shortest_chain(importer=imported, imported=module)) is not None
    ]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
    assert {"benchmarks.mnist.run", "benchmarks.mnist.result", "benchmarks.common.report"} <= (
        graph.modules
    )


def test_no_cycle_breakers_nominated_in_any_package() -> None:
    """grimp finds nothing to break between the children of any package either."""
    grimp = pytest.importorskip("grimp", reason="grimp (the 'dev' extra) is missing")
    graph = grimp.build_graph("rankopt", cache_dir=None)
    packages = sorted(m for m in graph.modules if graph.find_children(m))
    assert "rankopt.searching" in packages
    for package in packages:
        assert graph.nominate_cycle_breakers(package) == set(), package


def test_import_linter_contracts_are_kept() -> None:
    """The layers and forbidden imports declared in pyproject.toml hold."""
    cli = pytest.importorskip("importlinter.cli", reason="import-linter ('dev' extra) is missing")
    code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0


@pytest.mark.parametrize(
    "package", ["rankopt", "rankopt.searching", "rankopt.storage", "rankopt.latency"]
)
def test_every_public_name_resolves(package: str) -> None:
    """A lazily loaded name that points at the wrong module fails here, not in a user's
    command (mypy accepts any name of a module with ``__getattr__``)."""
    import importlib

    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    assert set(module.__all__) <= set(dir(module))


def test_optional_dependencies_load_through_one_helper() -> None:
    """A missing optional package is one RankoptError naming it, its user and its extra."""
    from rankopt._optional import installed, try_import
    from rankopt.errors import RankoptError

    assert try_import("json", extra="dev", needed_for="a test").dumps([1]) == "[1]"
    assert installed("json") and not installed("no_such_package_rankopt")
    with pytest.raises(RankoptError) as info:
        try_import("no_such_package_rankopt", extra="onnx", needed_for="ONNX export")
    assert str(info.value) == (
        "ONNX export needs the 'no_such_package_rankopt' package, which is not installed; "
        "install it with: pip install 'rankopt[onnx]'"
    )
    # the only place rankopt asks whether an optional package is installed
    users = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "rankopt").rglob("*.py"))
        if "find_spec(" in path.read_text()
    ]
    assert users == ["rankopt/_optional.py"], users


def test_packages_are_used_through_their_face() -> None:
    """No module imports another package's private module (``rankopt.storage._open``): what
    a package offers the others is what its ``__init__`` exports (the search's sub-rooms are
    one package, ``rankopt.searching``)."""
    grimp = pytest.importorskip("grimp", reason="grimp (the 'dev' extra) is missing")
    graph = grimp.build_graph("rankopt", cache_dir=None)
    reached = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            inside = imported.split(".")[2:]
            same_package = imported.split(".")[:2] == module.split(".")[:2]
            if not same_package and any(part.startswith("_") for part in inside):
                reached.append(f"{module} -> {imported}")
    assert reached == []
    assert "rankopt.storage._open" in graph.modules  # not vacuous: the private modules exist
