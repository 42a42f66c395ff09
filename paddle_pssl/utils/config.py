"""Config loading: PaddleSeg's ``Config`` plus checks that turn common
mistakes into one line naming the file and the key."""
import difflib
import os
import re

import yaml
from paddleseg.cvlibs import Config, manager

from .errors import PSSLError

# Top-level keys that PaddleSeg 2.8 and this project read.
KNOWN_TOP_LEVEL_KEYS = (
    'batch_size', 'iters', 'train_dataset', 'val_dataset', 'optimizer',
    'lr_scheduler', 'loss', 'distill_loss', 'model', 'test_config', 'export',
    'to_static_training', 'seed', 'pseudo_labels', 'mm_tuning')

_COMPONENT_MANAGERS = (manager.MODELS, manager.BACKBONES, manager.DATASETS,
                       manager.TRANSFORMS, manager.LOSSES, manager.OPTIMIZERS)
# Types that PaddleSeg resolves outside the component managers.
_NON_COMPONENT_TYPE_KEYS = ('lr_scheduler', 'optimizer')


def _suggest(name, candidates):
    close = difflib.get_close_matches(str(name), list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ''


def _all_components():
    names = set()
    for m in _COMPONENT_MANAGERS:
        names.update(m.components_dict.keys())
    return names


def _walk_types(node, key_path, found):
    if isinstance(node, dict):
        if 'type' in node:
            found.append((key_path, node['type']))
        for k, v in node.items():
            _walk_types(v, f'{key_path}.{k}' if key_path else str(k), found)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_types(v, f'{key_path}[{i}]', found)


def _walk_urls(node, key_path, found):
    if isinstance(node, dict):
        for k, v in node.items():
            _walk_urls(v, f'{key_path}.{k}' if key_path else str(k), found)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_urls(v, f'{key_path}[{i}]', found)
    elif isinstance(node, str) and re.match(r'^(https?|ftp)://', node):
        found.append((key_path, node))


def check_config_dict(dic, path):
    """Raise PSSLError for unknown top-level keys, unregistered ``type:``
    values and URLs (nothing may be downloaded at run time)."""
    for key in dic:
        if key not in KNOWN_TOP_LEVEL_KEYS:
            raise PSSLError(f'{path}: unknown top-level key {key!r}'
                            f'{_suggest(key, KNOWN_TOP_LEVEL_KEYS)}')
    components = _all_components()
    found = []
    _walk_types(dic, '', found)
    for key_path, type_name in found:
        top = key_path.split('.')[0].split('[')[0]
        if top in _NON_COMPONENT_TYPE_KEYS and '.' not in key_path:
            continue
        if top == 'optimizer' and key_path.startswith('optimizer.grad_clip_cfg'):
            continue
        if type_name not in components:
            raise PSSLError(f'{path}: {key_path}.type {type_name!r} is not a registered '
                            f'component{_suggest(type_name, components)}')
    urls = []
    _walk_urls(dic, '', urls)
    for key_path, url in urls:
        raise PSSLError(f'{path}: {key_path} is a URL ({url}); nothing is downloaded '
                        'at run time, point it at a local file')


def load_config(path, learning_rate=None, batch_size=None, iters=None, opts=None):
    """PaddleSeg ``Config`` for ``path`` after the checks above."""
    if not path:
        raise PSSLError('no config given: use -c/--config path/to/config.yml')
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: config file not found')
    if not path.endswith(('.yml', '.yaml')):
        raise PSSLError(f'{path}: config must be a .yml/.yaml file')
    for item in opts or []:
        if item.count('=') != 1:
            raise PSSLError(f'--opts {item!r}: expected key=value, e.g. batch_size=2')
    try:
        cfg = Config(path, learning_rate=learning_rate, batch_size=batch_size,
                     iters=iters, opts=opts)
    except yaml.YAMLError as e:
        raise PSSLError(f'{path}: invalid YAML ({str(e).splitlines()[0]})')
    except (AssertionError, ValueError, KeyError, TypeError) as e:
        message = ' '.join(str(e).split()) or type(e).__name__
        raise PSSLError(f'{path}: {message}')
    check_config_dict(cfg.dic, path)
    return cfg
