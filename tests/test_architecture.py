"""The package reads as the data flow: each sub-package imports only from those before it, and no two
modules import each other (directly or round a loop), lazily or not.

The order below is the flow of DESIGN.md; a new sub-package must be placed in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "dfpanel"

# Lowest first. A module may import from its own layer or any layer before it.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "hashing", "console", "atomic"},
    {"synth"},
    {"index"},
    {"extract"},
    {"views"},
    {"pseudofakes"},
    {"models"},
    {"weights"},
    {"inference"},
    {"train"},
    {"evaluate"},
    {"panel"},
    {"report"},
    {"detect"},
    {"serve"},
    {"demo", "commands", "cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every dfpanel module imported anywhere in the file (top level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "dfpanel"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "dfpanel":
                continue
            out.append((node.lineno, mod))
            # `from dfpanel.x import y` may name a sub-module y
            for a in node.names:
                if (PKG.parent / Path(*f"{mod}.{a.name}".split("."))).with_suffix(".py").is_file():
                    out.append((node.lineno, f"{mod}.{a.name}"))
    return out


def sub_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def test_every_sub_package_has_a_place_in_the_flow():
    found = {sub_package(m) for m in all_modules()}
    assert found - set(RANK) == set(), "place the new sub-package in LAYERS"


def test_imports_point_down_the_flow():
    bad = []
    for mod, path in all_modules().items():
        here = RANK[sub_package(mod)]
        for line, target in imports_of(path):
            there = RANK.get(sub_package(target))
            if there is None or there > here:
                bad.append(f"{path.relative_to(PKG)}:{line} imports {target}")
    assert bad == []


def test_no_import_cycles_between_modules():
    mods = all_modules()
    graph = {m: {t for _, t in imports_of(p) if t in mods and t != m} for m, p in mods.items()}
    # A package's __init__ importing its own modules is registration, not a cycle of ideas.
    for m in graph:
        graph[m] = {t for t in graph[m] if not (m and t.startswith(m + ".") and mods[m].name == "__init__.py")}
    cycles, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == []


@pytest.mark.parametrize("source, message", [
    ("from dfpanel.detect.pipeline import PanelDetector\n", "imports dfpanel.detect.pipeline"),
    ("def f():\n    from dfpanel.cli import main\n", "imports dfpanel.cli"),
])
def test_the_direction_check_catches_an_import_that_points_up(tmp_path, monkeypatch, source, message):
    """The check itself can fail: a lazy or top-level import from a later step is reported."""
    fake = PKG / "extract" / "_direction_probe.py"
    monkeypatch.setattr(Path, "read_text", _reading(fake, source))
    monkeypatch.setattr(Path, "rglob", _with(fake))
    with pytest.raises(AssertionError, match=message):
        test_imports_point_down_the_flow()


def _reading(fake: Path, source: str):
    real = Path.read_text

    def read_text(self, *a, **k):
        return source if self == fake else real(self, *a, **k)

    return read_text


def _with(fake: Path):
    real = Path.rglob

    def rglob(self, pattern):
        yield from real(self, pattern)
        if self == PKG:
            yield fake

    return rglob


def test_commands_only_parse_and_call_the_library():
    """No command module is imported by the library (serve once imported `commands.detect`)."""
    users = [f"{m} imports {t}" for m, p in all_modules().items() if sub_package(m) not in {"commands", "cli", "__main__"}
             for _, t in imports_of(p) if sub_package(t) == "commands"]
    assert users == []


def test_the_cli_imports_no_heavy_library_until_a_command_runs():
    """`dfpanel --help` stays fast: commands import torch, PyAV, timm... inside their bodies."""
    import subprocess
    import sys

    code = ("import sys, dfpanel.cli; "
            "print(','.join(m for m in ('torch', 'av', 'timm', 'cv2', 'lightning', 'pandas', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
