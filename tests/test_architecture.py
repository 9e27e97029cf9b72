"""The import rules that keep the two packages apart (docs/architecture.md).

- The core (`helpdesk` without its web modules) imports neither the web modules
  nor the gateway: the services, the inbound pipeline and the models work the
  same under the portal, the gateway process and the CLI.
- The web modules (`helpdesk.api`, `helpdesk.portal`, `helpdesk.tracker`,
  `helpdesk.auth`, `helpdesk.form_data`, `helpdesk.http_errors`, `helpdesk.request_size`) never import
  the gateway.
- The gateway (`mailgateway`) uses the core, never the web modules.

`helpdesk/__init__.py`, the app factory, is where web and core meet and may
import both. Imports inside functions count: hiding one there is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = (
    "helpdesk.api",
    "helpdesk.portal",
    "helpdesk.tracker",
    "helpdesk.auth",
    "helpdesk.form_data",
    "helpdesk.http_errors",
    "helpdesk.request_size",
)
FACTORY = "helpdesk"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str | None = None, *, at_run_time: bool = False) -> set[str]:
    """Every module `path` imports, at any depth of its code, relative ones resolved.

    `at_run_time`: leave out `if TYPE_CHECKING:` blocks, and name `from a import b`
    as the module `a.b` when there is one (not the package `a` as well)."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if at_run_time and isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                module = f"{base}.{alias.name}"
                if at_run_time:
                    found.add(module if _is_module(module) else base)
                else:
                    found.update((base, module))
    return found


def _is_module(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _within(module: str, packages: tuple[str, ...] | str) -> bool:
    packages = (packages,) if isinstance(packages, str) else packages
    return any(module == p or module.startswith(p + ".") for p in packages)


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("helpdesk"), ids=lambda p: _module_name(p))
def test_helpdesk_never_imports_the_gateway(path: Path) -> None:
    assert {m for m in _imports(path) if _within(m, "mailgateway")} == set()


@pytest.mark.parametrize(
    "path",
    [p for p in _modules("helpdesk") if not _within(_module_name(p), WEB) and _module_name(p) != FACTORY],
    ids=lambda p: _module_name(p),
)
def test_the_core_never_imports_the_web_modules(path: Path) -> None:
    assert {m for m in _imports(path) if _within(m, WEB)} == set()


@pytest.mark.parametrize("path", _modules("mailgateway"), ids=lambda p: _module_name(p))
def test_the_gateway_never_imports_the_web_modules(path: Path) -> None:
    assert {m for m in _imports(path) if _within(m, WEB)} == set()


def test_the_walker_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """A rule that sees nothing passes everything: the walker is tested too."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from . import sibling\n"
        "from ..services import tickets\n"
        "def f():\n"
        "    from mailgateway import smtp\n"
        "    import helpdesk.portal.tickets\n"
    )
    found = _imports(sample, "helpdesk.inbound.sample")
    assert {
        "helpdesk.inbound.sibling",
        "helpdesk.services.tickets",
        "mailgateway.smtp",
        "helpdesk.portal.tickets",
    } <= found
    assert _within("mailgateway.smtp", "mailgateway") and not _within("mailgateways", "mailgateway")


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other, directly or around (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in graph:
        if module not in index:
            visit(module)
    return groups


def test_the_core_has_no_import_cycles() -> None:
    """Modules that need each other (models and the SLA rules did, hidden in
    function-level imports) are one module in two files. The blueprint packages'
    `bp` idiom is Flask's and stays out of this rule."""
    core = {
        _module_name(p): p
        for p in [*_modules("helpdesk"), *_modules("mailgateway")]
        if not _within(_module_name(p), WEB) and _module_name(p) != FACTORY
    }
    graph = {
        name: {m for m in _imports(path, at_run_time=True) if m in core and m != name}
        for name, path in core.items()
    }
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []
