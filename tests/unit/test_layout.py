"""The package's shape: imports go one way (cli -> {api, indexer, train} -> search), the
cold path is used by the engine alone, and every PIXFIND_* variable is read in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..conftest import ROOT

PACKAGES = ("search", "indexer", "api", "train")
# which of pixfind's own packages each package may import
ALLOWED = {
    "search": {"search"},
    "indexer": {"indexer", "search"},
    "api": {"api", "search"},
    "train": {"train", "search", "indexer"},
}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def pixfind_imports(path: Path) -> set[str]:
    """Top-level pixfind packages a module imports (absolute or relative)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(ROOT).parts[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: within the package, or up to a sibling
                parts = path.relative_to(ROOT).parts[:-1]
                base = parts[: len(parts) - node.level + 1]
                target = (base + tuple((node.module or "").split(".")))[0] if base else None
                found.add(target or package)
            elif node.module and node.module.startswith("pixfind."):
                found.add(node.module.split(".")[1])
            elif node.module and node.module.split(".")[0] in (*PACKAGES, "cli"):
                found.add("bare " + node.module)  # `from search import x`: not installed name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pixfind."):
                    found.add(alias.name.split(".")[1])
    return found


def test_imports_flow_one_way():
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in modules(package):
            bad = pixfind_imports(path) - allowed
            if bad:
                wrong.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not wrong, wrong


def test_search_holds_no_training_code():
    names = {p.stem for p in modules("search")}
    assert not names & {"train", "fit", "demodata", "evaluate", "contact", "demo"}


def test_the_cold_path_is_used_by_the_engine_alone():
    users = {
        str(p.relative_to(ROOT))
        for p in modules("search")
        if "cold" not in p.parts and "cold" in " ".join(sorted(pixfind_imports(p)))
    }
    texts = {
        str(p.relative_to(ROOT))
        for package in (*PACKAGES, "cli")
        for p in (modules(package) if package != "cli" else [ROOT / "cli.py"])
        if "cold" not in p.parts and re.search(r"\.cold\b|\bcold\.", p.read_text())
    }
    assert (users | texts) <= {"search/engine.py", "search/index.py", "search/encoder.py"}, (
        users | texts
    )


def test_pixfind_variables_are_read_in_one_module():
    """A PIXFIND_* name as a value in code (not in prose) only in search/settings.py."""
    readers = set()
    for package in (*PACKAGES, "cli"):
        for p in modules(package) if package != "cli" else [ROOT / "cli.py"]:
            for node in ast.walk(ast.parse(p.read_text())):
                value = getattr(node, "value", None)
                named = isinstance(value, str) and re.fullmatch(r"PIXFIND_[A-Z_]+", value)
                if isinstance(node, ast.Constant) and named:
                    readers.add(str(p.relative_to(ROOT)))
    assert readers == {"search/settings.py"}, readers


def test_no_module_outgrows_the_floor_plan():
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for package in PACKAGES
        for p in modules(package)
    }
    assert len((ROOT / "cli.py").read_text().splitlines()) < 550
    assert {name: n for name, n in sizes.items() if n > 460} == {}
