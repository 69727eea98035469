"""The structure docs/DESIGN.md describes, checked: every module imports, the import graph has
no cycle (imports inside functions and under TYPE_CHECKING included, so none can hide one),
each layer imports only downward, and the desktop host never needs the server stack."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("native_host", "shared_pki")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def _resolve(name: str) -> str | None:
    """The first-party module a dotted name lands in (a module, else its package)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> Iterator[tuple[str, int, bool]]:
    """(imported first-party module, line, inside a function) for every import statement."""
    path = MODULES[module]
    tree = ast.parse(path.read_text("utf-8"))
    is_package = path.name == "__init__.py"
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            nested |= {id(sub) for sub in ast.walk(node) if sub is not node}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                yield target, node.lineno, id(node) in nested


def graph() -> dict[str, set[str]]:
    return {module: {target for target, _, _ in imports_of(module)} for module in MODULES}


def test_every_module_imports() -> None:
    for module in MODULES:
        if not module.endswith("__main__"):  # `python -m` entry points run when imported
            importlib.import_module(module)


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


# Layers, lowest first: a module may import its own layer and the layers listed before it.
# A name matches a module and everything under it; the longest match wins.
LAYERS: dict[str, list[str]] = {
    "library": [  # pure functions, no I/O
        "shared_pki.errors", "shared_pki.oids", "shared_pki.sm_oids", "shared_pki.sm2",
        "shared_pki.keys", "shared_pki.cms", "shared_pki.x509", "shared_pki.tsp",
        "shared_pki.mime", "shared_pki.smime", "shared_pki.pkcs12", "shared_pki.backup",
        "shared_pki.acme", "shared_pki.ca", "shared_pki",
    ],
    "net": ["shared_pki.net"],
    "service.base": [
        "shared_pki.service.config", "shared_pki.service.storage",
        "shared_pki.service.request_size",
    ],
    "service.state": ["shared_pki.service.state"],
    "service.ca": ["shared_pki.service.ca"],
    "service.acme": ["shared_pki.service.acme"],
    "service.parts": [
        "shared_pki.service.mail_validation", "shared_pki.service.directory",
        "shared_pki.service.tsa",
    ],
    "service.app": ["shared_pki.service.app", "shared_pki.service.serve"],
    "service.cli": ["shared_pki.service.cli", "shared_pki.service"],
    # native_host sits on the library and net (never on the service)
    "host.base": ["native_host", "native_host.errors", "native_host.protocol"],
    "host.infrastructure": ["native_host.infrastructure"],
    "host.domain": ["native_host.domain"],
    "host.ops": ["native_host.ops"],
    "host.transport": ["native_host.transport"],
    "host.installation": ["native_host.installation"],
    "host.cli": ["native_host.commands", "native_host.cli", "native_host.__main__"],
}  # fmt: skip
SERVICE_LAYERS = {layer for layer in LAYERS if layer.startswith("service")}
ORDER = list(LAYERS)


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return best[1] if best else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_layer_imports_only_downward(module: str) -> None:
    own = layer_of(module)
    assert own is not None, f"{module} belongs to no layer: add it to LAYERS and the design"
    upward = []
    for target, line, _nested in imports_of(module):
        theirs = layer_of(target)
        wrong_side = own.startswith("host") and theirs in SERVICE_LAYERS
        if theirs is None or ORDER.index(theirs) > ORDER.index(own) or wrong_side:
            upward.append(f"{MODULES[module].name}:{line} imports {target} ({theirs})")
    assert not upward, f"{module} ({own}) imports upward:\n" + "\n".join(upward)


# The server stack: never imported by the desktop side (native_host, the library, net).
SERVER_ONLY = ("starlette", "uvicorn", "sqlalchemy", "psycopg")


def test_the_desktop_side_never_imports_the_server_stack() -> None:
    offenders = []
    for module, path in MODULES.items():
        if module.startswith("shared_pki.service"):
            continue
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in SERVER_ONLY:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not offenders, "\n".join(offenders)


def test_the_server_modules_name_the_extra() -> None:
    """`autosmime pki serve` names exactly the extra's modules when one is missing."""
    from shared_pki.service import cli

    assert set(SERVER_ONLY) == cli.SERVER_MODULES


LONG_MODULE = 500


def test_long_native_host_modules_say_they_are_one_cohesive_thing() -> None:
    """docs/DESIGN.md: no module over about 500 lines unless it is one cohesive thing and says
    so in its docstring."""
    unsplit = []
    for module, path in MODULES.items():
        if not module.startswith("native_host"):
            continue
        text = path.read_text("utf-8")
        docstring = " ".join((ast.get_docstring(ast.parse(text)) or "").split())
        if text.count("\n") > LONG_MODULE and "one cohesive thing" not in docstring.lower():
            unsplit.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert not unsplit, "\n".join(unsplit)


def test_no_javascript_module_declares_a_function_twice() -> None:
    """A second `function f` in one module silently replaces the first (hoisting); Python's
    linter catches the same mistake (F811), nothing catches it in the extension. A merge once
    left two `repliedMessage` in the Gmail adapter and broke encrypted replies."""
    import re
    from collections import Counter

    declared = re.compile(
        r"^\s*(?:export\s+)?(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)", re.M
    )
    twice = []
    for path in sorted((ROOT / "extension").rglob("*.js")):
        counts = Counter(declared.findall(path.read_text("utf-8")))
        twice += [f"{path.relative_to(ROOT)}: {name}" for name, n in counts.items() if n > 1]
    assert not twice, "\n".join(twice)
