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
              "harness.rating_tasks", "harness.subsample", "harness.version")),
    ("store", ("harness.store", "harness.merge")),
    ("catalogs", ("harness.devices", "harness.prompts", "harness.prompt_templates", "harness.prompt_layouts", "harness.prompt_record",
                  "harness.prompt_hub", "harness.variants", "harness.attacks")),
    ("run", ("harness.backends", "harness.telemetry", "harness.trackers", "harness.llama_runtime",
             "harness.llama_server", "harness.roofline", "harness.measurement", "harness.engine")),
    ("fleet", ("harness.fleet",)),
    ("judge", ("harness.judging", "harness.adaptive_attack")),
    ("agree", ("harness.humans", "harness.annotate", "harness.agreement", "harness.study", "harness.calibration",
               "harness.hh_audit", "harness.cardlib", "harness.probe_fit")),
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


# What the command line may import from below the API: leaf helpers that only parse arguments or print, and a few
# functions that only turn results into text. Everything else goes through harness.api (or harness.cli's own
# modules). Type-only imports (`if TYPE_CHECKING:`) are exempt, as in the layer test.
CLI_BELOW_API: dict[str, set[str] | None] = {  # module -> the names it may import (None: any public name)
    "harness": {"__version__"},  # `harness --version`
    "harness.errors": None,  # the error types the CLI turns into one line and an exit code; did_you_mean, redact
    "harness.safetext": None,  # untrusted text escaped on the terminal
    "harness.formatting": None,  # number formatting shared by every surface
    "harness.numbers": None,  # the bounded parser of numbers given as arguments (--seeds, --reverse-groups)
    "harness.agreement.render": {"agreement_rich", "ranking_rich", "test_line"},  # tables of agreement rows
    "harness.study": {"columns", "row_cells"},  # the judge benchmark's table, shared with study-judge.md
    "harness.hh_audit": {"share_text"},  # "k/n [interval]" of an audit share
    "harness.rates": {"card_verdict_text"},  # a judge card's Youden J and verdict in words
    "harness.rating_tasks": {"rating_task"},  # which rate (harm, refusal, win share) a ratings table shows
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def cli_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names imported) of every harness import of a module, type-only ones left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    out: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("harness")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


CLI_MODULES = [p for p in MODULES if module_name(p).startswith(("harness.cli", "harness.__main__"))]


@pytest.mark.parametrize("path", CLI_MODULES, ids=lambda p: module_name(p))
def test_the_cli_calls_the_api_and_no_internals(path: Path) -> None:
    """Issue 24: every command parses arguments, calls public functions of harness.api and prints. It imports no
    private name, no private module but its own, and nothing below the API but CLI_BELOW_API's printing helpers."""
    me, bad = module_name(path), []
    for line, module, names in cli_imports(path):
        if module == "harness":  # `from harness import api, safetext`: each name is a module (or __version__)
            pairs = [(f"harness.{n}", []) if (PACKAGE / f"{n}.py").is_file() or (PACKAGE / n).is_dir()
                     else ("harness", [n]) for n in names]
        else:
            pairs = [(module, names)]
        for target, imported in pairs:
            where = f"{me}:{line} imports {target}"
            if any(_private(part) for part in target.split(".")) and not target.startswith("harness.cli."):
                bad.append(f"{where}: a private module")
            bad += [f"{where}.{n}: a private name" for n in imported if _private(n)]
            if target.startswith(("harness.cli", "harness.api")) or target in ("harness.cli", "harness.api"):
                continue
            allowed = CLI_BELOW_API.get(target, set())
            if allowed is not None and (not imported or not set(imported) <= allowed):
                names = ", ".join(sorted(set(imported) - allowed))
                bad.append(f"{where}{f' ({names})' if names else ''}: below the API; add a public function to "
                           "harness.api")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad += [f"{me}:{n.lineno} uses api.{n.attr}: a private name" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "api"
            and _private(n.attr)]
    assert not bad, "\n".join(bad)


def test_no_command_module_imports_another() -> None:
    """Issue 24: shared presentation lives in harness.cli's presentation modules, never in a sibling command."""
    from harness.cli import COMMAND_MODULES

    commands = {f"harness.cli.{name}" for name in COMMAND_MODULES}
    bad = [f"{module_name(p)}:{line} imports {target}" for p in CLI_MODULES if module_name(p) in commands
           for line, target, _ in cli_imports(p) if target in commands and target != module_name(p)]
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
    assert out == ["harness.api._core", "harness.rates.leaderboard", "False", "False"]


def test_the_api_exports_what_it_lists_and_nothing_private() -> None:
    """harness.api's __all__ is the API a reader sees: every name resolves, none is private, and each area module's
    public functions are re-exported (a command can reach all of them through `from harness import api`)."""
    import importlib

    import harness.api

    assert not [n for n in harness.api.__all__ if _private(n)]
    missing = [n for n in harness.api.__all__ if getattr(harness.api, n, None) is None]
    assert not missing, missing
    for path in sorted((PACKAGE / "api").glob("[!_]*.py")):
        module = importlib.import_module(module_name(path))
        public = [n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
                  and getattr(v, "__module__", None) == module.__name__]
        unlisted = sorted(set(public) - set(harness.api.__all__))
        assert public and not unlisted, (module.__name__, unlisted)


def test_architecture_md_names_every_layer_and_top_module() -> None:
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for name, prefixes in LAYERS:
        assert f"**{name}**" in text, name
        for p in prefixes:
            assert f"`{p.removeprefix('harness.')}" in text, p


def _module_exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def import_edges() -> dict[str, set[str]]:
    """module -> the harness modules it imports anywhere (inside functions too; `if TYPE_CHECKING:` aside).
    `from harness.a import b` is an edge to harness.a.b when b is a module, else to harness.a; a module's own
    parent packages are not edges (importing a module imports its package first anyway)."""
    edges: dict[str, set[str]] = {}
    for path in MODULES:
        me = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("harness.")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if _module_exists(sub) else node.module)
        edges[me] = {t for t in targets if t != me and not me.startswith(t + ".") and t != "harness"}
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (an import cycle each)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_strongly_connected_finds_a_cycle_and_only_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    """An import inside a function is for start-up time (a heavy library, `import harness` kept light), never
    to hide a cycle: modules import each other one way only."""
    cycles = strongly_connected(import_edges())
    assert not cycles, "import cycles (break each by moving the shared piece down a module):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


MAX_FUNCTION_LINES = 100


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module_name(path)}.{node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n" + "\n".join(long)
