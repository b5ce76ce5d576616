"""The package's shape: file and folder sizes, no import cycle, layers that only import downwards, and
heavy engines imported only where they are used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tutorkd"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The tutorkd modules ``path`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tutorkd"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tutorkd"))
    return found & set(modules())


def test_no_file_is_over_400_lines_and_no_folder_over_12_modules() -> None:
    long = {str(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long
    crowded = {str(d): n for d in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]
               if (n := len([f for f in d.glob("*.py") if f.name != "__init__.py"])) > 12}
    assert not crowded


def test_module_level_imports_form_no_cycle() -> None:
    graph = {name: imports(path, top_level_only=True) - {name} for name, path in modules().items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_lower_layers_never_import_higher_ones() -> None:
    """Environments, students, LLM backends and configs never import teachers, the loop or the
    assembly (not even inside a function): they are what those are built from."""
    higher = ("tutorkd.agents", "tutorkd.assembly", "tutorkd.lifecycle", "tutorkd.loop", "tutorkd.cli",
              "tutorkd.generation", "tutorkd.evals")
    lower = ("tutorkd.environments", "tutorkd.students", "tutorkd.llm", "tutorkd.config", "tutorkd.schema",
             "tutorkd.protocols", "tutorkd.io", "tutorkd.verify")
    upward = {name: sorted(m for m in imports(path, top_level_only=False) if m.startswith(higher))
              for name, path in modules().items() if name.startswith(lower)}
    assert not {name: found for name, found in upward.items() if found}


def test_importing_the_package_and_its_cli_loads_no_engine() -> None:
    code = ("import sys, tutorkd, tutorkd.cli, tutorkd.config, tutorkd.assembly\n"
            "print(sorted(m for m in ('vllm', 'trl', 'peft', 'transformers', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
