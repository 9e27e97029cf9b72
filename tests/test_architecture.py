"""The import rules that keep the two packages apart (docs/architecture.md).

- The core (`helpdesk` without its web modules) imports neither the web modules
  nor the gateway: the services, the inbound pipeline and the models work the
  same under the portal, the gateway process and the CLI.
- The web modules (`helpdesk.api`, `helpdesk.portal`, `helpdesk.tracker`,
  `helpdesk.auth`) never import the gateway.
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
WEB = ("helpdesk.api", "helpdesk.portal", "helpdesk.tracker", "helpdesk.auth")
FACTORY = "helpdesk"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str | None = None) -> set[str]:
    """Every module `path` imports, at any depth of its code, relative ones resolved."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, packages: tuple[str, ...] | str) -> bool:
    packages = (packages,) if isinstance(packages, str) else packages
    return any(module == p or module.startswith(p + ".") for p in packages)


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("helpdesk"), ids=lambda p: _module_name(p))
def test_helpdesk_never_imports_the_gateway(path: Path) -> None:
    assert {m for m in _imports(path) if _within(m, "mailgateway")} == set()


@pytest.mark.parametrize("path", [p for p in _modules("helpdesk")
                                  if not _within(_module_name(p), WEB)
                                  and _module_name(p) != FACTORY],
                         ids=lambda p: _module_name(p))
def test_the_core_never_imports_the_web_modules(path: Path) -> None:
    assert {m for m in _imports(path) if _within(m, WEB)} == set()


@pytest.mark.parametrize("path", _modules("mailgateway"), ids=lambda p: _module_name(p))
def test_the_gateway_never_imports_the_web_modules(path: Path) -> None:
    assert {m for m in _imports(path) if _within(m, WEB)} == set()


def test_the_walker_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """A rule that sees nothing passes everything: the walker is tested too."""
    sample = tmp_path / "sample.py"
    sample.write_text("from . import sibling\n"
                      "from ..services import tickets\n"
                      "def f():\n"
                      "    from mailgateway import smtp\n"
                      "    import helpdesk.portal.tickets\n")
    found = _imports(sample, "helpdesk.inbound.sample")
    assert {"helpdesk.inbound.sibling", "helpdesk.services.tickets", "mailgateway.smtp",
            "helpdesk.portal.tickets"} <= found
    assert _within("mailgateway.smtp", "mailgateway") and not _within("mailgateways", "mailgateway")
