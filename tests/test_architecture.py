"""The architecture holds: layers import only downwards, only the store speaks SQL, `import harness` is cheap.

The layers are the ones ARCHITECTURE.md names, along the data path run -> store -> judge -> agree -> rates ->
report. Every `import` of a harness module anywhere in a module (top level or inside a function) counts;
imports only for type checking (`if TYPE_CHECKING:`) do not.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"

# (layer, module prefixes), lowest first. A module belongs to the longest prefix that matches it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaf", ("harness.errors", "harness.keys", "harness.records", "harness.progress", "harness.registry",
              "harness.stats", "harness.formatting", "harness.tomlfile", "harness.cache", "harness.catalog",
              "harness.encodings", "harness.infiles", "harness.outputs", "harness.jsontext",
              "harness.csvtext", "harness.safetext", "harness.numbers", "harness.disparity", "harness.intervals",
              "harness.rating_tasks",
              "harness.subsample")),
    ("store", ("harness.store", "harness.merge")),
    ("catalogs", ("harness.devices", "harness.prompts", "harness.prompt_templates", "harness.variants")),
    ("run", ("harness.backends", "harness.telemetry", "harness.trackers", "harness.llama_runtime",
             "harness.llama_server", "harness.roofline", "harness.engine")),
    ("fleet", ("harness.fleet",)),
    ("judge", ("harness.judging",)),
    ("agree", ("harness.humans", "harness.annotate", "harness.agreement", "harness.study", "harness.calibration",
               "harness.hh_audit", "harness.cardlib")),
    ("rates", ("harness.rates", "harness.qos")),
    ("report", ("harness.reporting",)),
    ("api", ("harness.api",)),
    ("cli", ("harness.cli", "harness.__main__")),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and ARCHITECTURE.md"
    return best


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def harness_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    me = module_name(path)
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("harness")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            if node.module == "harness":  # `from harness import keys`: the submodules (not __version__)
                out += [(node.lineno, f"harness.{a.name}") for a in node.names
                        if (PACKAGE / f"{a.name}.py").is_file() or (PACKAGE / a.name).is_dir()]
            else:
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{me}:{node.lineno} uses a relative import: import harness.* absolutely")
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_a_layer_above_it(path: Path) -> None:
    me = module_name(path)
    mine = layer_of(me)
    bad = []
    for line, target in harness_imports(path):
        if target.startswith("harness._catalog"):
            continue
        theirs = layer_of(target)
        if theirs > mine:
            bad.append(f"{me}:{line} imports {target} ({LAYERS[theirs][0]} is above {LAYERS[mine][0]})")
    assert not bad, "\n".join(bad)


SQL = re.compile(r"""["'](?:\s*)(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|ALTER|BEGIN)\s""")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_only_the_store_speaks_sql(path: Path) -> None:
    if module_name(path) == "harness.store":
        return
    text = path.read_text(encoding="utf-8")
    assert "sqlite3" not in text, f"{path} uses sqlite3: go through harness.store"
    assert not SQL.search(text), f"{path} writes SQL: add a typed method to harness.store"


CONSOLE = re.compile(r"\bConsole\(|markup=True")
MATH_PLOTS = re.compile(r"^def (?!to_svg)\w+_svg\(", re.M)


def test_terminal_and_plots_show_text_as_text() -> None:
    """Names and outputs reach the terminal and the plots: consoles come from harness.cli.console.terminal()
    (markup off), and every plot is drawn under _plots.plain_text (mathtext off)."""
    bad = [str(p) for p in MODULES if module_name(p) != "harness.cli.console"
           and CONSOLE.search(p.read_text(encoding="utf-8"))]
    assert not bad, f"make consoles with harness.cli.console.terminal(): {bad}"
    plots = (PACKAGE / "reporting" / "_plots.py").read_text(encoding="utf-8")
    for m in MATH_PLOTS.finditer(plots):
        before = plots[: m.start()].rstrip().splitlines()[-1]
        assert before == "@plain_text", f"{m.group(0)} in _plots.py is not drawn under @plain_text"


def test_importing_harness_loads_no_heavy_library() -> None:
    code = ("import harness, sys; print([m for m in ('numpy','pandas','llama_cpp','onnxruntime','torch') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_api_is_reexported_lazily() -> None:
    code = ("import harness, sys; r = harness.run; print(r.__module__, harness.LeaderboardRow.__module__, "
            "'pandas' in sys.modules, 'llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["harness.api", "harness.rates", "False", "False"]


def test_architecture_md_names_every_layer_and_top_module() -> None:
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for name, prefixes in LAYERS:
        assert f"**{name}**" in text, name
        for p in prefixes:
            assert f"`{p.removeprefix('harness.')}" in text, p
