"""The layout of styleport/runtime (issue 20): one folder per job, no import circle, nothing eager."""
import ast
import subprocess
import sys
from pathlib import Path

import styleport

PKG = Path(styleport.__file__).parent
RUNTIME = PKG / "runtime"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_modules() -> dict[str, Path]:
    return {module_name(p): p for p in RUNTIME.rglob("*.py")}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every styleport.runtime module this file imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                cycle = visit(m)
                if cycle:
                    return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


def runtime_graph() -> dict[str, set[str]]:
    mods = runtime_modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def test_runtime_import_graph_has_no_cycle():
    graph = runtime_graph()
    assert len(graph) > 20
    # the graph is real: the coreml runner imports its neuralNetwork sibling and its op kernels
    assert "styleport.runtime.coreml.nn" in graph["styleport.runtime.coreml.runner"]
    assert "styleport.runtime.coreml.ops" in graph["styleport.runtime.coreml.nn_layers"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
    graph = runtime_graph()
    graph["styleport.runtime.coreml.ops"] = graph["styleport.runtime.coreml.ops"] | {"styleport.runtime.coreml.runner"}
    assert find_cycle(graph) is not None


def test_runtime_is_one_folder_per_job():
    top = sorted(p.name for p in RUNTIME.iterdir() if p.name != "__pycache__")
    assert top == ["__init__.py", "coreml", "harness", "numerics", "runners"]


def test_importing_runtime_loads_no_runner_or_runtime_package():
    code = ("import sys, styleport.runtime, styleport.runtime.runners.registry as r\n"
            "heavy = ('onnxruntime', 'ai_edge_litert', 'coremltools', 'torch', 'executorch', 'onnx')\n"
            "mods = sorted(m for m in sys.modules if m.startswith('styleport.runtime.') or m.split('.')[0] in heavy)\n"
            "print('\\n'.join(mods))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert set(out) <= {"styleport.runtime.runners", "styleport.runtime.runners.registry",
                        "styleport.runtime.runners.base"}, out
