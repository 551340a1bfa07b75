"""The package's layering, read from the import statements with `ast`.

* no import cycle among `gjscc_jax` modules, nor among its packages (two
  packages importing each other through different modules is a cycle too);
* models, losses, ops, channel, metrics, pixels and perception never import
  training,
  schemes, inversion, evaluation or data code;
* nothing in `gjscc_jax` imports `experiments` or `benchmarks`, nor
  `subprocess`: the library never spells or runs a command line (that is
  `experiments/`, e.g. `experiments/matrix.py`);
* data never imports models.
"""

import ast
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "gjscc_jax"

#: Module prefixes that must not import the prefixes listed with them.
FORBIDDEN = (
    (("gjscc_jax.models", "gjscc_jax.losses", "gjscc_jax.ops",
      "gjscc_jax.channel", "gjscc_jax.channels", "gjscc_jax.metrics",
      "gjscc_jax.pixels", "gjscc_jax.perception"),
     ("gjscc_jax.train", "gjscc_jax.schemes", "gjscc_jax.inverse",
      "gjscc_jax.evaluation", "gjscc_jax.data")),
    (("gjscc_jax",), ("experiments", "benchmarks", "subprocess")),
    (("gjscc_jax.data",), ("gjscc_jax.models",)),
)


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(REPO).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _modules():
  return {_module_name(p): p for p in (REPO / PACKAGE).rglob("*.py")}


def _imports(name, path, known):
  """Modules `name` imports (anywhere in the file, lazily or not)."""
  tree = ast.parse(path.read_text(), filename=str(path))
  is_package = path.name == "__init__.py"
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # Relative: resolve against this module's package.
        base = name.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        module = ".".join(base + ([node.module] if node.module else []))
      else:
        module = node.module
      for alias in node.names:  # `from pkg import submodule` names a module.
        candidate = f"{module}.{alias.name}"
        out.add(candidate if candidate in known else module)
  return out


def _graph():
  modules = _modules()
  return {name: {m for m in _imports(name, path, modules)}
          for name, path in modules.items()}


def _within(module, prefixes):
  return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read():
  graph = _graph()
  assert "gjscc_jax.models.deepjscc" in graph
  assert "gjscc_jax.channel" in graph["gjscc_jax.models.deepjscc"]
  assert "gjscc_jax.ops.conv2d" in graph["gjscc_jax.models.jscc_blocks"]


@pytest.mark.parametrize("sources,targets", FORBIDDEN)
def test_forbidden_imports(sources, targets):
  bad = sorted((src, dst) for src, deps in _graph().items()
               if _within(src, sources) for dst in deps if _within(dst, targets))
  assert not bad, f"layering violations (importer, imported): {bad}"


def _package(module):
  """`gjscc_jax.train.loop` -> `gjscc_jax.train`; a top-level module is its own."""
  return ".".join(module.split(".")[:2])


def _cycles(internal):
  """Strongly connected components with more than one node of {node: deps}."""
  # Tarjan's strongly connected components; any with > 1 module is a cycle.
  index, low, stack, on_stack, cycles = {}, {}, [], set(), []
  counter = [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(internal[v]):
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

  for v in sorted(internal):
    if v not in index:
      visit(v)
  return cycles


def test_no_import_cycles():
  graph = _graph()
  internal = {n: {d for d in deps if d in graph and d != n}
              for n, deps in graph.items()}
  cycles = _cycles(internal)
  assert not cycles, f"import cycles: {cycles}"


def test_no_package_cycles():
  graph = _graph()
  packages = {}
  edges = {}  # (importer package, imported package) -> one module pair.
  for src, deps in graph.items():
    packages.setdefault(_package(src), set())
    for dst in deps:
      if dst in graph and _package(dst) != _package(src):
        packages[_package(src)].add(_package(dst))
        edges.setdefault((_package(src), _package(dst)), (src, dst))
  cycles = _cycles(packages)
  detail = [[edges[a, b] for a in c for b in c if (a, b) in edges] for c in cycles]
  assert not cycles, f"package import cycles: {cycles}; through {detail}"


def test_the_checks_catch_a_violation(tmp_path, monkeypatch):
  """A planted cycle and a planted forbidden import are reported."""
  pkg = tmp_path / PACKAGE
  (pkg / "models").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "models" / "__init__.py").write_text("")
  (pkg / "models" / "a.py").write_text("from gjscc_jax.train import b\n")
  (pkg / "train").mkdir()
  (pkg / "train" / "__init__.py").write_text("")
  (pkg / "train" / "b.py").write_text("from gjscc_jax.models import a\n")
  monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
  with pytest.raises(AssertionError, match="import cycles"):
    test_no_import_cycles()
  with pytest.raises(AssertionError, match="layering violations"):
    test_forbidden_imports(*FORBIDDEN[0])


def test_a_package_cycle_without_a_module_cycle_is_caught(tmp_path, monkeypatch):
  """train.a -> schemes.b and schemes.c -> train.d: no module cycle, a package one."""
  files = {"__init__.py": "", "train/__init__.py": "", "schemes/__init__.py": "",
           "train/a.py": "from gjscc_jax.schemes import b\n",
           "schemes/b.py": "",
           "schemes/c.py": "from gjscc_jax.train import d\n",
           "train/d.py": ""}
  for name, text in files.items():
    path = tmp_path / PACKAGE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
  test_no_import_cycles()  # Module by module there is no cycle...
  with pytest.raises(AssertionError, match="package import cycles.*gjscc_jax.schemes"):
    test_no_package_cycles()  # ...but the packages import each other.
