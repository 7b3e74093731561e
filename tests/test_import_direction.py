"""The house has four layers and one direction of flow (docs/architecture.md): every rule there is checked
here on the source of every file (every import statement, also those inside functions), so neither a
wrong-way import nor a lazy one can sneak a loop back in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GROUND = {"errors", "settings", "logs"}
SHELLS = {"api", "ui", "cli", "app"}
LAYER_OF = {  # top-level name -> the layers it may import (besides itself)
    "errors": set(),
    "settings": set(),
    "logs": {"settings"},
    "engine": {"errors"},
    "storage": {"errors"},
    "schemas": {"engine", "errors"},
    "service": {"engine", "storage", "schemas", "errors", "settings", "logs"},
    "evaluation": {"engine", "errors", "schemas"},
    "calibration": {"engine", "evaluation", "errors", "logs"},
    "api": {"service", "schemas", "errors", "settings", "logs"},
    "ui": {"service", "schemas", "errors", "settings", "logs"},
    "cli": {"service", "schemas", "errors", "settings", "logs", "evaluation", "calibration"},
    "app": {"service", "schemas", "errors", "settings", "logs", "api", "ui"},
}
# The shells' rule that matters most, stated on its own so its failure message says so.
NEVER_FROM_A_SHELL = {"engine", "storage"}


def project_names() -> set[str]:
    packages = {path.name for path in ROOT.iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    return packages | {path.stem for path in ROOT.glob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an import statement in the file names (``from x.y import z`` → ``x.y``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)} & project_names()


def source_files() -> list[Path]:
    """Every module of the product (tests, benchmarks and tools are drivers, not layers)."""
    files = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {".venv", "build", "tests", "bench", "tools", "models", "data"}:
            continue
        files.append(path)
    return files


def layer(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_the_checker_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef late():\n    from engine.face.pipeline import FacePipeline\n    import service.faces\n", encoding="utf-8")
    assert imported_modules(sample) == {"os", "engine.face.pipeline", "service.faces"}


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted({layer(path) for path in source_files()} - set(LAYER_OF))
    assert unknown == [], f"add these to LAYER_OF and docs/architecture.md: {unknown}"


@pytest.mark.parametrize("name", sorted(LAYER_OF))
def test_each_layer_imports_only_downward(name):
    allowed = LAYER_OF[name] | {name}
    wrong = {
        str(path.relative_to(ROOT)): sorted(top_levels(path) - allowed)
        for path in source_files()
        if layer(path) == name and top_levels(path) - allowed
    }
    assert wrong == {}, f"{name} may import only {sorted(LAYER_OF[name])}"


def test_shells_never_reach_past_the_service():
    wrong = {
        str(path.relative_to(ROOT)): sorted(top_levels(path) & NEVER_FROM_A_SHELL)
        for path in source_files()
        if layer(path) in SHELLS and top_levels(path) & NEVER_FROM_A_SHELL
    }
    assert wrong == {}


def test_only_settings_reads_the_environment():
    readers = []
    for path in source_files():
        if path.name == "settings.py" and path.parent == ROOT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "putenv"} and isinstance(node.value, ast.Name) and node.value.id == "os":
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []


def test_the_package_graph_has_no_loop():
    edges = {name: set() for name in LAYER_OF}
    for path in source_files():
        edges.setdefault(layer(path), set()).update(top_levels(path) - {layer(path)})
    visiting, done, loops = set(), set(), []

    def visit(node: str, trail: list[str]) -> None:
        if node in done:
            return
        if node in visiting:
            loops.append(" -> ".join(trail[trail.index(node):] + [node]))
            return
        visiting.add(node)
        for target in sorted(edges.get(node, ())):
            visit(target, trail + [node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(edges):
        visit(name, [])
    assert loops == []


def test_the_module_graph_has_no_loop():
    """Module level too: ``calibration.calibrate`` → ``evaluation.heldout`` → ``calibration`` would be a loop
    even where the package rule allows one of the two arrows."""
    modules = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path for path in source_files()}
    edges = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_modules(path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        edges[module] = targets
    order, state = [], {}

    def visit(node: str, trail: list[str]) -> str | None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open" and not _package_init_of(target, node):
                return " -> ".join(trail + [node, target])
            if target not in state and (loop := visit(target, trail + [node])):
                return loop
        state[node] = "done"
        order.append(node)
        return None

    loops = [loop for module in sorted(edges) if module not in state and (loop := visit(module, []))]
    assert loops == []


def _package_init_of(package: str, module: str) -> bool:
    """A package's ``__init__`` re-exporting its own module is not a loop Python trips on."""
    return module.startswith(package + ".")
