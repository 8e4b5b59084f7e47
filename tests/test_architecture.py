"""The layering of docs/architecture.md, checked on the code: imports go one way, no cycles, no private
names across modules, media without torch, no file citing a document outside the repository.

Every ``import`` and ``from ... import`` of every module under vsr/ counts, inside functions too;
imports under ``if TYPE_CHECKING:`` do not (type hints only).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vsr"
MAX_LINES = 400  # one concern per file


def layer_table(doc: Path = REPO / "docs" / "architecture.md") -> dict[str, int]:
    """{package: layer} from the table of docs/architecture.md (rows ``| N | `pkg`, `pkg` | ... |``)."""
    table = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            for name in re.findall(r"`([\w.]+)`", m.group(2)):
                table[name] = int(m.group(1))
    return table


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every import of ``path`` outside TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def graph(root: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, list[tuple[str, list[str], int]]]]:
    """{module: modules of the package it imports} and every module's raw imports."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    edges, raw = {}, {}
    for name, path in files.items():
        raw[name] = imports(path, name)
        deps = set()
        for base, names, _ in raw[name]:
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in files] or [base]
            for t in targets:
                parts = t.split(".")
                while parts and ".".join(parts) not in files:
                    parts.pop()
                if parts and ".".join(parts) != name:
                    deps.add(".".join(parts))
        edges[name] = deps
    return edges, raw


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str, table: dict[str, int]) -> int | None:
    parts = module.split(".")
    while parts:
        if ".".join(parts) in table:
            return table[".".join(parts)]
        parts.pop()
    return None


def upward(edges: dict[str, set[str]], table: dict[str, int]) -> list[str]:
    """``a (layer i) imports b (layer j > i)`` for every import that goes up, and unplaced modules."""
    bad = []
    for a, deps in sorted(edges.items()):
        la = layer_of(a, table)
        if la is None:
            bad.append(f"{a} is in no layer of docs/architecture.md")
            continue
        for b in sorted(deps):
            lb = layer_of(b, table)
            if lb is not None and lb > la:
                bad.append(f"{a} (layer {la}) imports {b} (layer {lb})")
    return bad


def test_the_table_places_every_module_and_imports_go_down() -> None:
    table = layer_table()
    assert table["vsr.errors"] == 0 and table["vsr.cli"] == 8 and table["vsr"] == 9, table
    edges, _ = graph()
    assert upward(edges, table) == []
    assert cycles(edges) == []


def test_the_check_finds_upward_imports_and_cycles(tmp_path: Path) -> None:
    """On a made-up package: a cycle through a function-level import, and an upward import."""
    pkg = tmp_path / "vsr"
    (pkg / "media").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("def f():\n    from vsr.media import probe\n")  # up, and a cycle
    (pkg / "media" / "__init__.py").write_text("")
    (pkg / "media" / "probe.py").write_text("from vsr import errors\nfrom typing import TYPE_CHECKING\n"
                                            "if TYPE_CHECKING:\n    from vsr.cli import x\n")
    edges, _ = graph(pkg)
    table = {"vsr.errors": 0, "vsr.media": 1, "vsr": 9}
    assert upward(edges, table) == ["vsr.errors (layer 0) imports vsr.media.probe (layer 1)"]
    assert cycles(edges) == [["vsr.errors", "vsr.media.probe"]]


def test_no_private_name_crosses_modules() -> None:
    _, raw = graph()
    crossing = [f"{mod}:{line} imports {name} from {base}" for mod, items in raw.items()
                for base, names, line in items if base.startswith("vsr")
                for name in names if name.startswith("_") and name != "__version__"]
    assert crossing == []


def test_media_does_not_import_torch() -> None:
    _, raw = graph()
    users = sorted(mod for mod, items in raw.items() if mod.startswith("vsr.media")
                   for base, _, _ in items if base.split(".")[0] == "torch")
    assert users == []


def test_files_stay_small_and_cite_only_what_the_repository_holds() -> None:
    long = [f"{p.relative_to(REPO)}: {n}" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert long == []
    tracked = [p for p in REPO.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".sh")
               and ".git" not in p.parts and "data" not in p.parts[len(REPO.parts):len(REPO.parts) + 1]]
    citing = [str(p.relative_to(REPO)) for p in tracked if "DESIGN.md" in p.read_text(encoding="utf-8", errors="replace")
              and p.name != "test_architecture.py"]
    assert citing == [], "DESIGN.md is not in the repository; cite docs/architecture.md"


@pytest.mark.parametrize("name", ["vsr.cli", "vsr"])
def test_top_layers_are_the_only_users_of_the_api(name: str) -> None:
    """Nothing in the package imports the Python API (vsr/__init__) or the CLI except what sits above."""
    edges, _ = graph()
    table = layer_table()
    users = sorted(a for a, deps in edges.items() if name in deps and layer_of(a, table) < table[name])
    assert users == []
