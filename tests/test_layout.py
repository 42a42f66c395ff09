"""The library's shape: no import cycles between its modules (lazy imports
included), no module over the size limit, and it does not reach into the
checkout (tools/, configs/) that an installed copy does not have."""
import ast
import os
import re

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'paddle_pssl')
MAX_LINES = 420


def _modules():
    found = {}
    for folder, _, files in os.walk(PKG):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, '.')
                found[dotted[:-len('.__init__')] if dotted.endswith('.__init__') else dotted] = path
    return found


def _imports(module, path, modules):
    """Project modules that ``module`` imports anywhere in its body."""
    package = module if path.endswith('__init__.py') else module.rsplit('.', 1)[0]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            names = [base] + [f'{base}.{a.name}' for a in node.names]
        else:
            continue
        # a package's __init__ runs before its children anyway: not an edge
        out.update(n for n in names if n in modules and n != module
                   and not module.startswith(n + '.'))
    return out


def _cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


@pytest.mark.parametrize('module', sorted(_modules()))
def test_module_size(module):
    with open(_modules()[module]) as f:
        assert sum(1 for _ in f) <= MAX_LINES


def test_library_does_not_use_the_checkout():
    for module, path in _modules().items():
        text = open(path).read()
        # no command line that runs a checkout script (messages may name them)
        assert not re.search(r"['\"]tools/\w+\.py['\"]\s*[,\]]", text), module
        assert 'METHODS.md' not in text, module   # the formulas' page is docs/methods.md
        if module != 'paddle_pssl':
            assert '_zlib_first' not in text.replace('paddle_pssl/_zlib_first.py', ''), module
