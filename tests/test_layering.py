"""The data path runs one way (DESIGN.md): lower layers never import higher ones."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "itnet_geo"

# What each layer must not import, anywhere in its modules (function-level imports
# included): io -> datasets -> transforms -> ops -> nn -> train -> cli.
FORBIDDEN = {
    "io": ("torch", "torch_geometric", "itnet_geo.datasets", "itnet_geo.transforms",
           "itnet_geo.ops", "itnet_geo.nn", "itnet_geo.train", "itnet_geo.cli"),
    "datasets": ("itnet_geo.transforms", "itnet_geo.ops", "itnet_geo.nn",
                 "itnet_geo.train", "itnet_geo.cli"),
    "transforms": ("itnet_geo.ops", "itnet_geo.nn", "itnet_geo.train", "itnet_geo.cli"),
    "ops": ("itnet_geo.datasets", "itnet_geo.transforms", "itnet_geo.nn",
            "itnet_geo.train", "itnet_geo.cli"),
    "nn": ("itnet_geo.datasets", "itnet_geo.transforms", "itnet_geo.train",
           "itnet_geo.cli"),
    "train": ("itnet_geo.cli",),
}  # fmt: skip


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, absolute, with its line."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
    return found


def _violations(layer: str) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        if layer == "train" and path.name == "__main__.py":
            continue  # `python -m itnet_geo.train` is the CLI's entry point
        for line, module in _imports(path):
            for banned in FORBIDDEN[layer]:
                if module == banned or module.startswith(banned + "."):
                    rel = path.relative_to(PACKAGE.parent)
                    bad.append(f"{rel}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer):
    assert _violations(layer) == []


def test_shared_helpers_import_no_layer():
    """itnet_geo/_atomic.py, _surface.py, typing.py serve every layer."""
    helpers = [
        path
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name not in ("__init__.py", "__main__.py", "cli.py")
    ]
    assert {path.name for path in helpers} >= {"_atomic.py", "_surface.py"}
    bad = [
        f"{path.name}:{line} imports {module}"
        for path in helpers
        for line, module in _imports(path)
        if module.startswith("itnet_geo.")
    ]
    assert bad == []


def test_only_the_cli_knows_argparse():
    users = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted(PACKAGE.rglob("*.py"))
        if any(module == "argparse" for _, module in _imports(path))
    ]
    assert users == ["itnet_geo/cli.py"]


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    """The checker itself: a datasets module importing a transform is caught."""
    fake = tmp_path / "itnet_geo"
    (fake / "datasets").mkdir(parents=True)
    (fake / "datasets" / "bad.py").write_text(
        "def f():\n    from itnet_geo.transforms import SamplePoints\n"
    )
    (fake / "datasets" / "rel.py").write_text("from ..nn import ITConv\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _violations("datasets") == [
        "itnet_geo/datasets/bad.py:2 imports itnet_geo.transforms",
        "itnet_geo/datasets/rel.py:1 imports itnet_geo.nn",
    ]
