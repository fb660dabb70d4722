"""The package's layers point one way: a module imports only from its own layer or the
ones below it (function-local imports included), no two modules import each other, even
through others, and the two methods never import each other. A new module must say which layer it belongs to here. And no function runs past
MAX_FUNCTION_LINES, so each reads in one sitting."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "recnb"

# lowest first; a module's layer is that of its longest listed prefix
LAYERS = {
    "recnb.errors": 0, "recnb.files": 0,
    "recnb.data": 1, "recnb.metrics": 1, "recnb.models": 1,
    "recnb.measure": 2, "recnb.checkpoint": 2, "recnb.evaluation": 2, "recnb.train": 2, "recnb.kd": 2, "recnb.runs": 2, "recnb.export": 2, "recnb.distributed": 2,
    "recnb.recommend": 3,
    "recnb.adarec": 3, "recnb.dllm2rec": 3,
    "recnb.analysis": 4, "recnb.frontier": 4, "recnb.results": 4, "recnb.viz": 4, "recnb.widgets": 4, "recnb.sweep": 4, "recnb.parallel": 4,
    "recnb.cli": 5, "recnb.commands": 5, "recnb.__main__": 5,
    "recnb": 6,  # the package's __init__: the public API re-exports every layer
}
METHODS = ("recnb.adarec", "recnb.dllm2rec")
MAX_FUNCTION_LINES = 60


def layer_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return prefix, LAYERS[prefix]
    raise KeyError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def recnb_imports(path: Path):
    """Every ``recnb`` module ``path`` imports, wherever in the file the import sits."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "recnb")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "recnb":
            for a in node.names:  # `from recnb.dllm2rec import teachers` imports a submodule
                sub = f"{node.module}.{a.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists() or \
                    (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists()
                yield sub if is_module else node.module


def test_every_import_points_down():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        try:
            my_group, mine = layer_of(me)
        except KeyError:
            wrong.append(f"{me}: no layer declared in tests/test_layers.py")
            continue
        for target in recnb_imports(path):
            group, theirs = layer_of(target)
            if theirs > mine:
                wrong.append(f"{me} (layer {mine}) imports {target} (layer {theirs})")
            if my_group in METHODS and group in METHODS and group != my_group:
                wrong.append(f"{me} imports the other method: {target}")
    assert not wrong, "\n".join(wrong)


def import_graph() -> dict[str, set[str]]:
    """recnb module -> the recnb modules it imports (a package counts as its __init__)."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        graph[me] = {t for t in recnb_imports(path) if t != me}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each once, as the modules along it (Tarjan's strongly connected
    components of more than one module)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    # the package's __init__ re-exports every layer: that one may be imported by anything that
    # also imports a submodule (``from recnb import viz``), so it is left out of the graph
    graph = {m: {t for t in ts if t != "recnb"} for m, ts in import_graph().items() if m != "recnb"}
    assert not cycles(graph), f"import cycles: {cycles(graph)}"


def test_the_cycle_finder_finds_one_through_a_third_module():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_sees_function_local_imports(tmp_path):
    code = tmp_path / "x.py"
    code.write_text("def f():\n    from recnb.viz import plot\n    import recnb.commands.train\n")
    assert set(recnb_imports(code)) >= {"recnb.viz", "recnb.commands.train"}


def test_no_function_runs_past_the_line_limit():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
