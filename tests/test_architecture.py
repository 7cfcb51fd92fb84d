"""The package's shape, checked: layers without import cycles, small modules and functions, imports at the top.

The layer contract itself (which layer may import which) is import-linter's, in ``pyproject.toml``
(``[tool.importlinter]``), run by ``make check``; ``test_layer_contract`` runs it here too.
"""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wiseft_lib"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# imports that may stay inside functions: the optional dependencies (the [studies] extra, timm)
OPTIONAL = {"papermill", "nbformat", "nbclient", "matplotlib", "seaborn", "ipywidgets", "IPython", "timm"}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def test_no_module_is_longer_than_500_lines():
    long = {_name(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by what they do): {long}"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_is_longer_than_60_lines():
    long = {}
    for path in _modules():
        for fn in _functions(ast.parse(path.read_text())):
            start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
            if fn.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                long[f"{_name(path)}:{fn.lineno} {fn.name}"] = fn.end_lineno - start + 1
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def _inner_imports(tree: ast.AST):
    for fn in _functions(tree):
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node


def test_imports_inside_functions_are_only_optional_dependencies_with_a_comment():
    bad = []
    for path in _modules():
        source = path.read_text()
        lines = source.splitlines()
        for node in _inner_imports(ast.parse(source)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            top = (module or "").split(".")[0]
            if top not in OPTIONAL or "#" not in lines[node.lineno - 1]:
                bad.append(f"{_name(path)}:{node.lineno} {lines[node.lineno - 1].strip()}")
    assert not bad, ("imports inside functions (move them to the top of the module; only optional dependencies "
                     f"stay inside, with a comment saying which extra): {bad}")


def test_the_package_has_no_import_cycle():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("wiseft_lib")
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components (the package has ~100 modules: recursion is fine)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert not cycles, f"modules that import each other (directly or through others): {cycles}"


def test_layer_contract():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([lint], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_library_imports_without_the_study_stack():
    """``pip install wiseft`` (no [studies] extra) has no matplotlib, seaborn, papermill, ...: every module below
    the report layer imports and the front door's library names resolve without them."""
    library = [p for p in _modules() if p.name != "__main__.py" and p.relative_to(PACKAGE).parts[0] in
               ("params.py", "__init__.py", "core", "data", "finetune", "mini", "experiment", "baselines", "analysis")]
    names = [".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__") for p in library]
    script = f"""
import importlib, importlib.abc, sys
STACK = {sorted(OPTIONAL - {"timm"})!r}
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in STACK:
            raise ImportError(f"{{name}} is not installed (the [studies] extra)")
sys.meta_path.insert(0, Missing())
for name in {names!r}:
    importlib.import_module(name)
import wiseft_lib
for name, module in wiseft_lib._FRONT_DOOR.items():
    if not module.startswith("wiseft_lib.studies"):
        getattr(wiseft_lib, name)
print(len({names!r}), "modules")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == str(len(names))
