"""The package layout the README describes: each package is used from outside through its
``__init__`` (``__all__``), and reading a spec or a registry does not import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hpo

ROOT = Path(hpo.__file__).parent


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_packages_are_used_from_outside_through_their_front_door() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    bypasses = []
    for path in sorted(ROOT.rglob("*.py")):
        own = path.relative_to(ROOT).parts[0]
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "hpo" or len(parts) < 3 or parts[1] not in packages:
                continue
            if parts[1] != own:
                bypasses.append(f"{path.relative_to(ROOT.parent)}:{line}: {module}")
    assert bypasses == [], (
        "import the package instead (add the name to its __all__):\n" + "\n".join(bypasses)
    )


def test_every_front_door_exports_what_its_all_lists() -> None:
    import importlib

    for init in sorted(ROOT.glob("*/__init__.py")):
        package = importlib.import_module(f"hpo.{init.parent.name}")
        for name in getattr(package, "__all__", []):
            assert getattr(package, name) is not None, f"hpo.{init.parent.name}.{name}"


def test_reading_specs_and_registries_does_not_import_torch() -> None:
    code = (
        "import sys, hpo, hpo.spec, hpo.models, hpo.data, hpo.trainer, hpo.study, hpo.keys\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
