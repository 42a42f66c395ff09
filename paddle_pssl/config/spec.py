"""The field-spec helper the schemas are declared with, and the one function
that checks a config against a schema and fills in its defaults."""
import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..utils.errors import PSSLError
from .loader import suggest

_PLURAL = {'int': 'integers', 'number': 'numbers', 'bool': 'booleans', 'str': 'strings',
           'list': 'lists', 'dict': 'mappings', 'any': 'values'}
_KIND_WORDS = {'int': 'an integer', 'number': 'a number', 'bool': 'true or false',
               'str': 'a string', 'list': 'a list', 'dict': 'a mapping', 'any': 'a value'}


@dataclass(frozen=True)
class Field:
    """One key: its default, type (``kind``), range, choices, an optional extra
    ``check(value) -> message or None``, and a one-line ``doc``."""
    default: Any = None
    kind: str = 'any'              # one of _KIND_WORDS
    nullable: bool = False         # null allowed (besides a null default)
    required: bool = False         # must be given and not null
    min: Optional[float] = None
    max: Optional[float] = None
    above: Optional[float] = None  # exclusive lower bound
    choices: Optional[tuple] = None
    items: Optional[str] = None    # kind of each list item
    min_len: int = 0
    length: Optional[int] = None
    check: Optional[Callable] = None
    doc: str = ''


@dataclass(frozen=True)
class Block:
    """A nested mapping merged key by key over its defaults. ``rules`` are
    checks across its fields: ``rule(values) -> (key, message) or None``."""
    fields: dict
    rules: tuple = ()
    nullable: bool = False         # null keeps null instead of the defaults
    fill: bool = True              # False: only the given keys (list entries)
    doc: str = ''


@dataclass(frozen=True)
class ListOf:
    """A list whose every entry is a :class:`Block` (no defaults merged into
    the list itself: a given list replaces the default one)."""
    entry: Block
    default: list = field(default_factory=list)
    min_len: int = 0
    doc: str = ''


def Int(default=None, min=None, max=None, **kw):
    return Field(default, 'int', min=min, max=max, **kw)


def Num(default=None, min=None, max=None, **kw):
    return Field(default, 'number', min=min, max=max, **kw)


def Bool(default=False, **kw):
    return Field(default, 'bool', **kw)


def Str(default=None, **kw):
    return Field(default, 'str', **kw)


def Choice(default, choices, **kw):
    return Field(default, 'any', choices=tuple(choices), **kw)


def Free(default=None, **kw):
    """Any value, replaced whole when given (e.g. a per-explainer settings map)."""
    return Field(default, 'any', **kw)


def defaults(spec):
    """The default value of ``spec``: nested blocks as dicts, deep copies."""
    if isinstance(spec, Block):
        return {k: defaults(v) for k, v in spec.fields.items()}
    return copy.deepcopy(spec.default)


def _is_kind(value, kind):
    if kind == 'int':
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == 'number':
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == 'bool':
        return isinstance(value, bool)
    if kind == 'str':
        return isinstance(value, str)
    if kind == 'list':
        return isinstance(value, (list, tuple))
    if kind == 'dict':
        return isinstance(value, dict)
    return True


def _problem(f, value):
    """What is wrong with ``value`` for field ``f``, or None."""
    if value is None or (f.required and value == ''):
        if f.required:
            return 'is required'
        if f.nullable or f.default is None:
            return None
        if f.check is not None:
            return f.check(value)
        return f'must be {_KIND_WORDS[f.kind]}, not null'
    if f.choices is not None:
        if value not in f.choices:
            return 'must be one of ' + ', '.join(repr(c) for c in f.choices)
        return None
    if not _is_kind(value, f.kind):
        if f.kind == 'int' and isinstance(value, float):
            return 'must be an integer (no decimal point)'
        word = f'a list of {_PLURAL[f.items]}' if f.kind == 'list' and f.items else _KIND_WORDS[f.kind]
        return f'must be {word}'
    if f.min is not None and value < f.min:
        return f'must be >= {f.min}'
    if f.above is not None and value <= f.above:
        return f'must be > {f.above}'
    if f.max is not None and value > f.max:
        return f'must be <= {f.max}'
    if f.kind == 'list':
        if f.length is not None and len(value) != f.length:
            return f'must be a list of {f.length} items'
        if len(value) < f.min_len:
            return f'must have at least {f.min_len} item' + ('s' if f.min_len > 1 else '')
        if f.items and not all(_is_kind(v, f.items) for v in value):
            return f'must be a list of {_PLURAL[f.items]}'
    if f.check is not None:
        return f.check(value)
    return None


def _fail(path, key, value, message):
    if value is _MISSING:
        return PSSLError(f'{path}: {key} {message}')
    return PSSLError(f'{path}: {key} {value!r}: {message}')


_MISSING = object()


def _places(spec, key, name, here):
    """Key paths of the blocks under ``spec`` (at ``key``) other than
    ``here`` that take ``name``."""
    if isinstance(spec, ListOf):
        return _places(spec.entry, f'{key}[]', name, here)
    if not isinstance(spec, Block):
        return []
    found = [f'{key}.{name}' if key else name] if name in spec.fields and key != here else []
    for sub_name, sub in spec.fields.items():
        found += _places(sub, f'{key}.{sub_name}' if key else sub_name, name, here)
    return found


def build(spec, value, key, path, root=None):
    """``value`` checked against ``spec`` and merged over its defaults; raises
    PSSLError with one line ``<path>: <key> <value>: <what is allowed>``; a
    key that another block of the schema takes is named with that block."""
    root = root or (spec, key)
    if isinstance(spec, Block):
        if value is _MISSING or value is None:
            return None if value is None and spec.nullable else build(spec, {}, key, path, root)
        if not isinstance(value, dict):
            raise _fail(path, key or '<top level>', value, 'must be a mapping of keys')
        for name in value:
            if name not in spec.fields:
                full = f'{key}.{name}' if key else str(name)
                places = _places(root[0], root[1], name, re.sub(r'\[\d+\]', '[]', key or ''))
                hint = f'; did you mean {places[0]}?' if places else suggest(name, spec.fields)
                raise PSSLError(f"{path}: unknown key '{full}'{hint}")
        out = {}
        for name, sub in spec.fields.items():
            if spec.fill or name in value or getattr(sub, 'required', False):
                full = f'{key}.{name}' if key else name
                out[name] = build(sub, value.get(name, _MISSING), full, path, root)
        for rule in spec.rules:
            found = rule(out)
            if found:
                sub_key, message = found
                raise _fail(path, f'{key}.{sub_key}' if key else sub_key, out[sub_key], message)
        return out
    if isinstance(spec, ListOf):
        if value is _MISSING:
            return copy.deepcopy(spec.default)
        if not isinstance(value, (list, tuple)) or len(value) < spec.min_len:
            raise _fail(path, key, value, f'must be a list of at least {spec.min_len} entr'
                        + ('y' if spec.min_len == 1 else 'ies') + ' (mappings)')
        return [build(spec.entry, v, f'{key}[{i}]', path, root) for i, v in enumerate(value)]
    if value is _MISSING:
        if spec.required and spec.default is None:
            raise _fail(path, key, _MISSING, 'is required')
        return copy.deepcopy(spec.default)
    message = _problem(spec, value)
    if message:
        raise _fail(path, key, _MISSING if message == 'is required' else value, message)
    return value
