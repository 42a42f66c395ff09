"""PaddleSeg-schema configs (tools/train.py, val.py, predict.py, export.py,
relabel.py): PaddleSeg's own ``Config``, reading its files through
:mod:`.loader` (safe YAML, ``_base_`` cycles and missing files in one line,
``--opts key=null`` unsets), plus checks that turn common mistakes into one
line naming the file and the key."""
import os
import re

from paddleseg.cvlibs import Config
from paddleseg.cvlibs.config import update_config_dict

from ..utils.errors import PSSLError, one_line
from ..utils.fetch import note_url_key
from .components import check_components, explain_build_error
from .loader import apply_opts, load_yaml, suggest
from .schemas import validate
from .sections import KNOWN_TOP_LEVEL_KEYS, check_sections, placement
from ..utils.nonfinite import ON_NONFINITE_LOSS
from .spec import Choice, Int, build

# Top-level keys whose type and range PaddleSeg leaves unchecked (or that
# only this project reads: on_nonfinite_loss, see paddle_pssl/utils/nonfinite.py).
TOP_LEVEL_FIELDS = {'iters': Int(min=1), 'batch_size': Int(min=1), 'seed': Int(),
                    'on_nonfinite_loss': Choice('stop', ON_NONFINITE_LOSS)}



class _Config(Config):
    """PaddleSeg's Config with this project's file reader and --opts parser;
    its checker rules and properties are PaddleSeg's."""

    @classmethod
    def _parse_from_yaml(cls, path, *args, **kwargs):
        return load_yaml(path)

    @classmethod
    def update_config_dict(cls, dic, learning_rate=None, batch_size=None, iters=None, opts=None):
        dic = update_config_dict(dic, learning_rate=learning_rate, batch_size=batch_size,
                                 iters=iters)
        # PaddleSeg's rule: --opts may add a key, not a whole missing section.
        return apply_opts(dic, opts, create=False)


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
    """Raise PSSLError for unknown top-level keys, keys of the mappings
    without a type that they do not take (:mod:`.sections`), unregistered
    ``type:`` values (optimizer and lr_scheduler included), keys their
    classes do not take (:mod:`.components`), each with the section a
    misplaced key belongs to, and URLs other than ``...pretrained`` ones
    (those are fetched when the model is built, see
    :mod:`paddle_pssl.utils.fetch`)."""
    for key in dic:
        if key not in KNOWN_TOP_LEVEL_KEYS:
            raise PSSLError(f'{path}: unknown top-level key {key!r}'
                            f"{placement(key, dic, '') or suggest(key, KNOWN_TOP_LEVEL_KEYS)}")
    check_sections(dic, path)
    found = []
    _walk_types(dic, '', found)
    check_components(dic, found, path, lambda key, here: placement(key, dic, here))
    urls = []
    _walk_urls(dic, '', urls)
    for key_path, url in urls:
        if key_path.split('.')[-1] == 'pretrained':
            note_url_key(url, key_path)
            continue
        raise PSSLError(f'{path}: {key_path} is a URL ({url}); only a ...pretrained key '
                        'may be a URL (fetched as PaddleSeg does), point this one at a local file')


def _check_flags(learning_rate, batch_size, iters):
    # PaddleSeg treats 0 as "not given"; refuse it rather than ignore it.
    for flag, value in (('--iters', iters), ('--batch_size', batch_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise PSSLError(f'{flag} {value!r}: must be an integer >= 1')
    if learning_rate is not None and not learning_rate > 0:
        raise PSSLError(f'--learning_rate {learning_rate!r}: must be > 0')


def load_config(path, learning_rate=None, batch_size=None, iters=None, opts=None):
    """PaddleSeg ``Config`` for ``path`` (flags and ``opts`` applied) after
    the checks above; every problem is a PSSLError of one line."""
    if not path:
        raise PSSLError('no config given: use -c/--config path/to/config.yml')
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: config file not found')
    if not str(path).endswith(('.yml', '.yaml')):
        raise PSSLError(f'{path}: config must be a .yml/.yaml file')
    _check_flags(learning_rate, batch_size, iters)
    if learning_rate is not None and 'lr_scheduler' not in load_yaml(path):
        raise PSSLError(f'{path}: --learning_rate needs an lr_scheduler block')
    try:
        cfg = _Config(path, learning_rate=learning_rate, batch_size=batch_size,
                      iters=iters, opts=opts)
    except KeyError as e:
        raise PSSLError(f'{path}: missing key {e.args[0]!r}' if e.args else f'{path}: missing key')
    except (AssertionError, ValueError, TypeError) as e:
        if isinstance(e, PSSLError):
            raise
        message = ' '.join(str(e).split()) or type(e).__name__
        raise PSSLError(f'{path}: {message}')
    except RuntimeError as e:
        # PaddleSeg's checker wraps its rule's message in a multi-line RuntimeError
        if 'Sanity check' not in str(e):
            raise
        raise PSSLError(f'{path}: {one_line(e)}')
    for key, spec in TOP_LEVEL_FIELDS.items():
        if cfg.dic.get(key) is not None:
            build(spec, cfg.dic[key], key, path)
    check_config_dict(cfg.dic, path)   # a block under the wrong parent, before its schema's words
    if 'mm_tuning' in cfg.dic:
        validate('mm_tuning', cfg.dic['mm_tuning'], path, 'mm_tuning')
    return cfg


def _label_padders(transforms):
    """(key path, label padding value, entry) of every transform that pads
    labels: its ``label_padding_value``, or that parameter's default
    (PaddleSeg's: 255)."""
    import inspect

    from paddleseg.cvlibs import manager
    found = []
    for i, entry in enumerate(transforms or []):
        cls = manager.TRANSFORMS.components_dict.get(entry.get('type')) if isinstance(entry, dict) else None
        param = inspect.signature(cls.__init__).parameters.get('label_padding_value') if cls else None
        if param is not None:
            found.append((f'train_dataset.transforms[{i}].label_padding_value',
                          entry.get('label_padding_value', param.default), entry))
    return found


def bind_label_space(cfg, path):
    """The training dataset class as PaddleSeg's builder must see it: for a
    dataset with a label space (``WeightedPSSLDataset.bound_to``), the class
    whose ``NUM_CLASSES``/``IGNORE_INDEX`` are the space's. Fills
    ``model.num_classes`` and the losses' ``ignore_index`` when absent, and
    refuses, in one line, a value that contradicts the space (a padding value
    that is a class id would train padding as that class). None for other
    datasets."""
    from paddleseg.cvlibs import manager
    dataset = cfg.dic.get('train_dataset') or {}
    cls = manager.DATASETS.components_dict.get(dataset.get('type'))
    if cls is None or not hasattr(cls, 'bound_to'):
        return None
    bound = cls.bound_to(dataset)
    space = f"the {dataset.get('label_space', 'upstream')} label space"
    outputs, ignore = bound.NUM_CLASSES, bound.IGNORE_INDEX
    model = cfg.dic.get('model')
    if isinstance(model, dict):
        if model.get('num_classes') is None:
            model['num_classes'] = outputs
        elif model['num_classes'] != outputs:
            raise PSSLError(f"{path}: model.num_classes {model['num_classes']}: {space} of "
                            f"{dataset.get('pssl_root')} has {outputs} outputs (classes + background); "
                            f'set {outputs} or leave it out')
    for i, loss in enumerate((cfg.dic.get('loss') or {}).get('types') or []):
        if isinstance(loss, dict) and loss.get('type') != 'MixedLoss':
            if loss.get('ignore_index') is None:
                loss['ignore_index'] = ignore
            elif loss['ignore_index'] != ignore:
                raise PSSLError(f"{path}: loss.types[{i}].ignore_index {loss['ignore_index']}: "
                                f'{space} ignores {ignore}; set {ignore} or leave it out')
            if loss.get('background_index') not in (None, bound.BACKGROUND):
                raise PSSLError(f"{path}: loss.types[{i}].background_index {loss['background_index']}: "
                                f'the background of {space} is {bound.BACKGROUND} (the last output); '
                                'set it or leave it out')
    from ..pseudo_labels.store import IGNORE_INDEX as UPSTREAM_IGNORE
    for key, value, entry in _label_padders(dataset.get('transforms')):
        if value == UPSTREAM_IGNORE and value != ignore:
            # upstream's configs pad with 1001; it is never a class of the other
            # spaces, so it stays "ignore": switching a config is one key
            entry['label_padding_value'] = ignore
        elif value != ignore:
            raise PSSLError(f'{path}: {key} {value}: {space} ignores {ignore}, and {value} '
                            f'would train the padding as a label; set {ignore}')
    return bound


def seg_builder(cfg, path=None):
    """PaddleSeg's ``SegBuilder`` for ``cfg`` whose "unexpected keyword
    argument" errors (from classes the checks above could not read, behind
    ``**kwargs``) become one line naming the key path, and whose training
    dataset class carries its label space (:func:`bind_label_space`)."""
    from paddleseg.cvlibs import SegBuilder

    bound = bind_label_space(cfg, path or '<config>')

    class _Builder(SegBuilder):
        if bound is not None:
            train_dataset_class = bound

        def build_component(self, component_cfg):
            try:
                return super().build_component(component_cfg)
            except RuntimeError as e:
                better = explain_build_error(e, cfg.dic, path or '<config>')
                if better is None:
                    raise
                raise better from None

    return _Builder(cfg)
