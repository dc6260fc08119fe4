"""The package's layers: every import points down (or within its own folder), none goes round
in a circle, and the module map (docs/architecture.md) names the folders that exist."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "aegen"

# Bottom to top; a module may import its own layer's folder and anything listed before it.
LAYERS = [
    {"aegen.errors", "aegen.names", "aegen.version"},
    {"aegen.models"},
    {"aegen.files"},
    {"aegen.data"},
    {"aegen.settings"},
    {"aegen.runs"},
    {"aegen.export"},
    {"aegen.latent"},
    {"aegen.trained"},
    {"aegen.scoring"},
    {"aegen.views"},
    {"aegen.training"},
    {"aegen.experiments"},
    {"aegen.cli"},
    {"aegen.__main__", "aegen"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer entry a module belongs to: its top folder or top-level module."""
    return ".".join(module.split(".")[:2])


def layer_of(module: str) -> int:
    for index, members in enumerate(LAYERS):
        if unit(module) in members:
            return index
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS and the module map")


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported aegen module, line, at module level) for every import in a file, including
    imports inside functions and under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "aegen" or name.startswith("aegen."):
                found.append((name, node.lineno, id(node) in top_level))
    return found


MODULES = {module_name(path): path for path in SOURCE.rglob("*.py")}


def known(name: str) -> str | None:
    """The aegen module an import name refers to (a module, or a name inside one)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    own = layer_of(module)
    for name, line, _ in imports_of(MODULES[module]):
        target = known(name)
        assert target is not None, f"{module}:{line} imports {name}, which does not exist"
        if target != module:
            assert unit(target) == unit(module) or layer_of(target) < own, (
                f"{module}:{line} imports {target}, which is not below it"
            )


def test_no_import_circle():
    graph = {
        module: {known(name) for name, _, _ in imports_of(path)} - {None, module, "aegen"}
        for module, path in MODULES.items()
    }
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        assert module not in trail, "import circle: " + " -> ".join(trail + [module])
        if module in done:
            return
        for target in graph[module]:
            visit(target, trail + [module])
        done.add(module)

    for module in graph:
        visit(module, [])


# Imports that stay inside functions, each for a stated reason (an optional extra or start-up).
DEFERRED = {
    *(m for m in MODULES if unit(m) == "aegen.cli"),  # `aegen --help` loads no torch
    "aegen",  # `import aegen` stays light until aegen.train/load/evaluate is used
    "aegen.__main__",  # the CLI's import inside a try: a Ctrl-C while starting is one line
}


def test_imports_sit_at_the_top_of_modules():
    inside = [
        f"{module}:{line} {name}"
        for module, path in MODULES.items()
        if module not in DEFERRED
        for name, line, top in imports_of(path)
        if not top and "TYPE_CHECKING" not in path.read_text().splitlines()[line - 2]
    ]
    assert not inside, "aegen imports inside functions: " + ", ".join(inside)


def test_the_module_map_names_every_folder():
    """docs/architecture.md, "Where things live", names every package folder and module."""
    folders = sorted(
        p.name for p in SOURCE.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    )
    section = (SOURCE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    for folder in folders:
        assert f"`{folder}/`" in section, f"docs/architecture.md's module map lacks {folder}/"
    for path in SOURCE.glob("*.py"):
        if path.stem not in ("__init__", "__main__"):
            assert f"`{path.name}`" in section, f"docs/architecture.md's map lacks {path.name}"
