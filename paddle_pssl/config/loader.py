"""Reading YAML configs: ``yaml.safe_load``, ``_base_`` inheritance with cycle
detection, and ``--opts key.sub=value`` overrides, for every kind of config."""
import copy
import difflib
import os
from ast import literal_eval

import yaml

from ..utils.errors import PSSLError

BASE_KEY = '_base_'
INHERIT_KEY = '_inherited_'
# Spellings of "no value" on the command line; key=<one of these> removes the key.
NULL_WORDS = ('null', 'Null', 'NULL', '~', 'None')
_BOOL_WORDS = {'true': True, 'True': True, 'TRUE': True,
               'false': False, 'False': False, 'FALSE': False}


class _Unset:
    """The parsed value of ``key=null``: remove the key."""

    def __repr__(self):
        return 'UNSET'


UNSET = _Unset()


def suggest(name, candidates):
    """`` (did you mean 'x'?)`` for the closest candidate, or ''."""
    same = [str(c) for c in candidates if str(c).lower() == str(name).lower()]
    close = same or difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ''


def merge_dicts(base, override):
    """``override`` merged into a deep copy of ``base`` the way PaddleSeg merges
    ``_base_`` files: mappings key by key, anything else replaced; a mapping
    with ``_inherited_: false`` replaces the base's mapping whole."""
    if isinstance(override, dict) and not override.get(INHERIT_KEY, True):
        return {k: copy.deepcopy(v) for k, v in override.items() if k != INHERIT_KEY}
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _drop_inherit_keys(node):
    if isinstance(node, dict):
        node.pop(INHERIT_KEY, None)
        for value in node.values():
            _drop_inherit_keys(value)
    elif isinstance(node, list):
        for value in node:
            _drop_inherit_keys(value)


def _read_one(path):
    try:
        with open(path, encoding='utf-8') as f:
            dic = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise PSSLError(f'{path}: invalid YAML ({" ".join(str(e).split())})')
    except OSError as e:
        raise PSSLError(f'{path}: cannot read ({e.strerror})')
    if dic is None:
        return {}
    if not isinstance(dic, dict):
        raise PSSLError(f'{path}: a config must be a mapping of keys, got {type(dic).__name__}')
    return dic


def _load_chain(path, chain):
    """``path`` with its bases merged in; ``chain`` = the real paths of the
    files that include it, outermost first."""
    chain = chain + [os.path.realpath(path)]
    dic = _read_one(path)
    bases = dic.pop(BASE_KEY, None)
    if bases is None:
        return dic
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise PSSLError(f'{path}: _base_ {bases!r}: must be a path or a list of paths')
    # Like PaddleSeg: the including file is merged into its first base, that
    # result into the second base, ... so earlier bases win over later ones.
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), base)
        if not os.path.isfile(base_path):
            raise PSSLError(f'{path}: _base_ {base!r} not found ({base_path})')
        real = os.path.realpath(base_path)
        if real in chain:
            cycle = ' -> '.join(os.path.basename(p) for p in chain[chain.index(real):] + [real])
            raise PSSLError(f'{path}: circular _base_ ({cycle})')
        dic = merge_dicts(_load_chain(base_path, chain), dic)
    return dic


def load_yaml(path, opts=None):
    """The config at ``path`` as a plain dict: ``_base_`` files merged in,
    ``_inherited_`` markers dropped, then ``opts`` (``key.sub=value`` strings)
    applied with :func:`apply_opts`."""
    if not path:
        raise PSSLError('no config given: use -c/--config path/to/config.yml')
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: config file not found')
    dic = _load_chain(path, [])
    _drop_inherit_keys(dic)
    return apply_opts(dic, opts)


def parse_opt(item):
    """``'a.b=value'`` -> (['a', 'b'], value). The value is a Python literal
    when it parses as one (``3``, ``0.5``, ``[1, 2]``, ``'x'``), true/false are
    booleans, null/~/None is :data:`UNSET`; a value in brackets or braces that
    is no Python literal is YAML flow syntax (``[{type: Resize, target_size:
    [32, 32]}]``), refused in one line naming the key when it does not parse;
    anything else stays a string."""
    key, sep, text = str(item).partition('=')
    parts = key.strip().split('.')
    if not sep or not all(parts):
        raise PSSLError(f'--opts {item!r}: expected key=value, e.g. batch_size=2')
    text = text.strip()
    if text in NULL_WORDS:
        return parts, UNSET
    if text in _BOOL_WORDS:
        return parts, _BOOL_WORDS[text]
    try:
        value = literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = _flow_yaml(key.strip(), text) if text[:1] in '[{' else text
    return parts, (UNSET if value is None else value)


def _flow_yaml(key, text):
    """A list or mapping written in YAML flow syntax, read by ``yaml.safe_load``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = ' '.join(str(getattr(e, 'problem', None) or e).split())
        raise PSSLError(f'--opts {key}: {text!r} is not a valid YAML list or mapping ({problem}); '
                        f"quote the whole item, e.g. '{key}=[{{type: Resize, target_size: [32, 32]}}]'")
    if not isinstance(value, (list, dict)):
        raise PSSLError(f'--opts {key}: {text!r} is not a list or mapping')
    return value


def _join_flow_items(opts):
    """Rejoin a YAML flow value that the shell split at its spaces
    (``-o a=[{type: X}]`` unquoted arrives as ``a=[{type:`` and ``X}]``)."""
    out = []
    for item in opts or []:
        item = str(item)
        if out and sum(map(out[-1].count, '[{')) > sum(map(out[-1].count, ']}')):
            out[-1] += ' ' + item
        else:
            out.append(item)
    return out


def apply_opts(dic, opts, create=True):
    """``dic`` (changed in place and returned) with each ``key.sub=value`` of
    ``opts`` set, or removed for ``key=null``. Missing intermediate mappings
    are created, or with ``create=False`` refused (PaddleSeg's rule)."""
    for item in _join_flow_items(opts):
        parts, value = parse_opt(item)
        node = dic
        for i, part in enumerate(parts[:-1]):
            where = '.'.join(parts[:i + 1])
            if part not in node or node[part] is None:
                if value is UNSET:
                    node = None
                    break
                if not create:
                    raise PSSLError(f'--opts {item!r}: {where} is not in the config'
                                    f'{suggest(part, node)}')
                node[part] = {}
            if not isinstance(node[part], dict):
                raise PSSLError(f'--opts {item!r}: {where} is {node[part]!r}, not a mapping')
            node = node[part]
        if node is None:
            continue
        if value is UNSET:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return dic
