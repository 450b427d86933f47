"""The shape of the code, checked: no import cycles, small documented modules, one place for
each data-directory name, no imports of our own modules hidden inside functions.

The layer contracts themselves (which package may import which) are import-linter's, in
setup.cfg, run by scripts/lint; these are the rules it does not express.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("chunkstore", "sofs", "fuse_mount", "exporters", "sofsctl")
MAX_LINES = 650  # "about 600 lines at most": a module past this is doing two jobs

# Imports of our own modules that stay inside a function, each with its reason.
LAZY_IMPORTS_ALLOWED = {
    # every other sofsctl command would pay for pyfuse3 (~150 ms) and the mount's malloc tuning
    ("sofsctl/main.py", "fuse_mount.daemon"),
}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _cycle_from(graph: grimp.ImportGraph, start: str) -> list[str] | None:
    """A cycle through START (a list of modules ending where it starts), or None."""
    for imported in sorted(graph.find_modules_directly_imported_by(start)):
        chain = graph.find_shortest_chain(importer=imported, imported=start)
        if chain:
            return [start, *chain]
    return None


def test_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES)
    cycles = {tuple(c) for m in sorted(graph.modules) if (c := _cycle_from(graph, m))}
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in sorted(cycles))


def test_every_module_is_small_and_says_what_it_is_for():
    too_long, undocumented = [], []
    for path in _modules():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES:
            too_long.append(f"{_rel(path)}: {lines} lines")
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            undocumented.append(_rel(path))
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
    assert not undocumented, f"modules without a docstring: {undocumented}"


def test_each_data_directory_name_is_defined_once():
    """Module-level FOO_FILE / FOO_DIR constants: one definition per value."""
    where: dict[str, list[str]] = {}
    for path in _modules():
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id.endswith(("_FILE", "_DIR"))
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                where.setdefault(node.value.value, []).append(f"{_rel(path)}:{node.targets[0].id}")
    twice = {value: places for value, places in where.items() if len(places) > 1}
    assert not twice, f"defined more than once: {twice}"


def _function_level_imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                name = ("." * node.level) + (node.module or "")
            elif isinstance(node, ast.Import):
                name = node.names[0].name
            else:
                continue
            if name.startswith(".") or name.split(".")[0] in PACKAGES:
                found.append((name, node.lineno))
    return found


def test_no_imports_of_our_own_modules_hidden_in_functions():
    hidden = [f"{_rel(p)}:{line} imports {name}" for p in _modules()
              for name, line in _function_level_imports(p)
              if (_rel(p), name) not in LAZY_IMPORTS_ALLOWED]
    assert not hidden, "function-level imports (move them to the top, or break the cycle):\n" + "\n".join(hidden)


@pytest.mark.parametrize("allowed", sorted(LAZY_IMPORTS_ALLOWED))
def test_every_allowed_lazy_import_still_exists(allowed):
    path, name = allowed
    assert name in {n for n, _ in _function_level_imports(ROOT / path)}, f"stale allowance: {allowed}"
