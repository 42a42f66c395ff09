"""Checks of a PaddleSeg-schema config's components by name, before anything
is built: ``optimizer.type`` and ``lr_scheduler.type`` against what
PaddleSeg's builder can resolve, and every key of a ``type:`` mapping against
the signature of the registered class. PaddleSeg's builder would report these
as a TypeError wrapped in a multi-line RuntimeError naming a class, not the
key; here each is one line naming the key path."""
import inspect
import re

from paddleseg.cvlibs import manager

from ..utils.errors import PSSLError
from .loader import suggest

# PaddleSeg's SegBuilder looks component types up in these, in this order.
COMPONENT_MANAGERS = (manager.MODELS, manager.BACKBONES, manager.DATASETS,
                      manager.TRANSFORMS, manager.LOSSES, manager.OPTIMIZERS)
# lr_scheduler keys that SegBuilder consumes itself (a LinearWarmup around the scheduler).
_WARMUP_KEYS = ('warmup_iters', 'warmup_start_lr')
# optimizer.type spellings that SegBuilder rewrites before the lookup.
_OPTIMIZER_ALIASES = {'sgd': 'SGD', 'adam': 'Adam'}


def optimizer_names():
    return sorted(manager.OPTIMIZERS.components_dict) + sorted(_OPTIMIZER_ALIASES)


def lr_scheduler_names():
    """Classes of ``paddle.optimizer.lr`` (SegBuilder does ``getattr`` there)."""
    import paddle.optimizer.lr as lr
    base = getattr(lr, 'LRScheduler')
    return sorted(n for n, v in vars(lr).items() if isinstance(v, type) and v is not base
                  and (issubclass(v, base) or n == 'ReduceOnPlateau'))


def _component(type_name):
    for m in COMPONENT_MANAGERS:
        if type_name in m.components_dict:
            return m.components_dict[type_name]
    return None


def _named_params(obj):
    """(names, takes **kwargs) of ``obj``'s call signature."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def accepted_arguments(obj):
    """The keyword arguments ``obj`` takes, or None when it cannot be told.

    A factory function ``def ResNet50_vd(**args): return ResNet_vd(layers=50,
    **args)`` (PaddleSeg's backbones) takes what the one class it calls takes.
    """
    names, var_kw = _named_params(obj)
    if not var_kw:
        return names
    if not inspect.isfunction(obj):
        return None
    called = {n: obj.__globals__.get(n) for n in obj.__code__.co_names}
    classes = [v for v in called.values() if inspect.isclass(v)]
    if len(classes) != 1:
        return None
    inner, inner_var_kw = _named_params(classes[0])
    return None if inner_var_kw else names | inner


def _check_arguments(key_path, type_name, obj, node, path, place=None):
    accepted = accepted_arguments(obj)
    if accepted is None:
        return
    for key in node:
        if key != 'type' and key not in accepted:
            hint = place(key, key_path) if place is not None else ''
            raise PSSLError(f'{path}: {key_path}.{key}: unknown argument of {type_name}'
                            f'{hint or suggest(key, accepted)}')


def check_components(dic, found, path, place=None):
    """Raise PSSLError for an unknown optimizer or lr_scheduler type, an
    unregistered ``type:`` elsewhere, or a key that the type's class does not
    take. ``found``: the (key path, type) of every ``type:`` mapping;
    ``place(key, key_path)``: where a refused key belongs (a hint, or '')."""
    optimizer = dic.get('optimizer')
    if isinstance(optimizer, dict) and 'type' in optimizer:
        name = _OPTIMIZER_ALIASES.get(optimizer['type'], optimizer['type'])
        if name == 'SGD' and 'momentum' in optimizer:
            name = 'Momentum'    # SegBuilder's rule
        if name not in manager.OPTIMIZERS.components_dict:
            known = optimizer_names()
            raise PSSLError(f"{path}: optimizer.type {optimizer['type']!r} is not an optimizer"
                            f"{suggest(optimizer['type'], known)}; known: {', '.join(known)}")
        _check_arguments('optimizer', name, manager.OPTIMIZERS[name], optimizer, path, place)
    scheduler = dic.get('lr_scheduler')
    if isinstance(scheduler, dict) and 'type' in scheduler:
        known = lr_scheduler_names()
        if scheduler['type'] not in known:
            raise PSSLError(f"{path}: lr_scheduler.type {scheduler['type']!r} is not a scheduler of "
                            f"paddle.optimizer.lr{suggest(scheduler['type'], known)}; known: "
                            f"{', '.join(known)}")
        import paddle.optimizer.lr as lr
        _check_arguments('lr_scheduler', scheduler['type'], getattr(lr, scheduler['type']),
                         {k: v for k, v in scheduler.items() if k not in _WARMUP_KEYS}, path, place)
    components = set()
    for m in COMPONENT_MANAGERS:
        components.update(m.components_dict)
    for key_path, type_name in found:
        top = key_path.split('.')[0].split('[')[0]
        if key_path in ('optimizer', 'lr_scheduler') or key_path.startswith('optimizer.grad_clip_cfg'):
            continue
        if not isinstance(type_name, str) or type_name not in components:
            raise PSSLError(f'{path}: {key_path}.type {type_name!r} is not a registered '
                            f'component{suggest(type_name, components)}')
        node = _node(dic, key_path)
        if isinstance(node, dict) and top != 'optimizer':
            _check_arguments(key_path, type_name, _component(type_name), node, path, place)


def _node(dic, key_path):
    node = dic
    for part in re.findall(r'[^.\[\]]+|\[\d+\]', key_path):
        node = node[int(part[1:-1])] if part.startswith('[') else node[part]
    return node


def _walk_components(node, key_path, found):
    """(key path, mapping) of every ``type:`` mapping under ``node``."""
    if isinstance(node, dict):
        if 'type' in node:
            found.append((key_path, node))
        for k, v in node.items():
            _walk_components(v, f'{key_path}.{k}' if key_path else str(k), found)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_components(v, f'{key_path}[{i}]', found)
    return found


def _explain_missing(message, dic, path):
    """A required argument left out (Python's TypeError, or PaddleSeg's
    datasets' "`train_path` is necessary"): one line naming the key path."""
    created = re.search(r'Tried to create an? (\w+) object', message)
    names = re.findall(r"'(\w+)'", (re.search(r'missing \d+ required positional arguments?: (.*)',
                                            message) or [None, ''])[1] or '')
    names += re.findall(r'`(\w+)` is necessary', message)
    if not created or not names:
        return None
    mode = re.search(r'When `mode` is "(\w+)"', message)
    places = [f'{key_path}.{names[0]}' for key_path, node in _walk_components(dic, '', [])
              if node.get('type') == created.group(1) and node.get(names[0]) is None
              and (mode is None or node.get('mode') == mode.group(1))]
    if len(places) != 1:
        return None
    why = f' (mode {mode.group(1)})' if mode else ''
    return PSSLError(f'{path}: {places[0]}: required by {created.group(1)}{why}, not given')


def explain_build_error(exc, dic, path):
    """A one-line PSSLError for PaddleSeg's builder error ``exc`` when it is
    an unexpected keyword argument that names a key of the config, or a
    required one left out, else None (the arguments of a class behind
    ``**kwargs`` are only known when built)."""
    match = re.findall(r"unexpected keyword argument '([^']+)'", str(exc))
    if not match:
        return _explain_missing(str(exc), dic, path)
    key, places = match[-1], []

    def walk(node, key_path):
        if isinstance(node, dict):
            if 'type' in node and key in node:
                places.append(f'{key_path}.{key}: unknown argument of {node["type"]}')
            for k, v in node.items():
                walk(v, f'{key_path}.{k}' if key_path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f'{key_path}[{i}]')
    walk(dic, '')
    if len(places) != 1:
        return None
    return PSSLError(f'{path}: {places[0]}')
