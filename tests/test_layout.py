"""The rooms of the house: what may import what, and files a reader can take in whole."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "workloads")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every module of ours `path` imports, at the top or inside a function."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {m for m in _imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_the_import_graph_has_no_circle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], cycles


# The floor every room may stand on: the error types, and the result's record types (its
# WorkloadInfo is what a workload says about itself). Neither imports anything of ours.
FLOOR = (
    "harness",
    "harness.errors",
    "harness.results",
    "harness.results.schema",
    "harness.results.typecheck",
)


def test_the_floor_imports_nothing_of_ours():
    graph = _graph()
    for name in FLOOR:
        assert graph[name] <= set(FLOOR), f"{name} imports {sorted(graph[name])}"


def test_workloads_are_a_leaf_and_meters_import_no_higher_room():
    for name, deps in _graph().items():
        if name.startswith("workloads"):
            upward = {d for d in deps if d.startswith("harness") and d not in FLOOR}
            assert not upward, f"{name} imports {sorted(upward)}"
        if name.startswith("harness.meters"):
            allowed = ("harness.meters", "harness.errors", "harness.results")
            upward = {d for d in deps if d.startswith("harness") and not d.startswith(allowed)}
            assert not upward, f"{name} imports {sorted(upward)}"


def test_the_validator_loads_no_workload_or_framework():
    code = (
        "import harness.submission.validate, sys; "
        "print(sorted(m for m in sys.modules if m.startswith(('workloads', 'torch', 'jax'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_file_is_longer_than_a_reader_takes_in_whole():
    long = {
        str(p.relative_to(REPO)): n
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}, long


@pytest.mark.parametrize("driver", ["api.py", "runner.py", "integrations/lightning.py"])
def test_the_drivers_touch_no_private_attribute_of_another_object(driver):
    """harness/api.py and harness/runner.py drive the run session through its public surface
    only: no `x._name` where x is not the driver itself."""
    tree = ast.parse((REPO / "harness" / driver).read_text())
    private = sorted(
        f"{ast.unparse(node)} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    )
    assert private == [], private


def test_one_run_session_owns_the_run_files():
    """A run's result.json has one writer (harness/results/writer.py: write_result), called by
    the run session and by imports only (harness/submission/ writes a package's copies): no
    driver writes result.json, mllog events or the meter itself."""
    writers, callers = {}, set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.is_relative_to(REPO / "harness" / "submission"):
                continue
            text = path.read_text()
            if re.search(r'atomic_write_json\([^)]*"result\.json"', text):
                writers[str(path.relative_to(REPO))] = "result.json"
            if re.search(r"\bwrite_result\(", text):
                callers.add(str(path.relative_to(REPO)))
    assert set(writers) <= {"harness/results/writer.py"}, writers
    rooms = {c for c in callers if not c.startswith("harness/imports/")}
    assert rooms == {"harness/session.py", "harness/results/writer.py"}, callers
    for driver in ("api.py", "runner.py"):
        text = (REPO / "harness" / driver).read_text()
        assert "mllog.event(" not in text and "MLLogger" not in text and "build_meter" not in text


def test_no_module_imports_a_private_name_from_another():
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                found += [f"{name}: {a.name} from {node.module}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]  # fmt: skip
    assert found == [], found
