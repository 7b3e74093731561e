"""The house follows the data: imports run one way, checked on the source (every import statement, also
those inside functions), so a lazy import cannot sneak a cycle back in.

- ``ood`` imports nothing from ``recognition`` (``recognition`` imports ``ood``: the quality stage);
- the engine (``recognition``, ``ood``, the keypoint engine modules) imports nothing from the app
  (``service``, ``api``, ``dashboard``, ``cli``, ``app``);
- the neutral modules (``errors``, ``schemas``) import nothing from the app either, and ``errors`` nothing
  of the project at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP_PACKAGES = ("service", "api", "dashboard", "cli", "app")
KEYPOINT_APP_MODULES = {"cli.py", "service.py"}  # keypoints' own shells (its CLI and service functions)


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file (``from x.y import z`` → ``x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def offenders(files: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & set(forbidden)) for path in files}
    return {path: names for path, names in found.items() if names}


def python_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    return files


def test_the_checker_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef late():\n    from recognition.errors import FroodError\n    import service.faces\n", encoding="utf-8")
    assert imported_packages(sample) == {"os", "recognition", "service"}


def test_ood_imports_nothing_from_recognition():
    assert offenders(python_files("ood"), ("recognition",)) == {}


@pytest.mark.parametrize("package", ["recognition", "ood", "keypoints"])
def test_engine_imports_nothing_from_the_app(package):
    files = [path for path in python_files(package) if not (package == "keypoints" and path.name in KEYPOINT_APP_MODULES)]
    assert offenders(files, APP_PACKAGES) == {}


def test_neutral_modules_import_nothing_from_the_app():
    assert offenders(python_files("schemas"), APP_PACKAGES) == {}
    project = {path.name for path in ROOT.iterdir() if path.is_dir() and (path / "__init__.py").is_file()} | {"settings", "app"}
    assert imported_packages(ROOT / "errors.py") & project == set()
