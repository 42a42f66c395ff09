"""Where each key of a PaddleSeg-schema config belongs.

The ``type:`` mappings (model, datasets, transforms, losses, optimizer,
lr_scheduler) take the arguments of their registered class
(:mod:`.components`). The mappings without a type take fixed keys:
``loss``/``distill_loss`` take ``types`` and ``coef``, ``test_config`` the
evaluation options of PaddleSeg's ``evaluate`` that its callers do not set
themselves, ``export`` PaddleSeg's ``transforms``, ``mm_tuning`` its schema's
keys. :func:`check_sections` refuses any other key there, and
:func:`belongs` names the section(s) where a refused key is taken, so that a
block indented under the wrong parent is refused with its path and its
place (``loss.transforms: not a key of loss; did you mean
train_dataset.transforms?``) instead of being ignored.
"""
import inspect

from ..utils.errors import PSSLError
from .loader import suggest

__all__ = ['KNOWN_TOP_LEVEL_KEYS', 'FIXED_SECTIONS', 'section_keys', 'belongs', 'placement',
           'check_sections']

# Top-level keys that PaddleSeg 2.8 and this project read.
KNOWN_TOP_LEVEL_KEYS = (
    'batch_size', 'iters', 'train_dataset', 'val_dataset', 'optimizer',
    'lr_scheduler', 'loss', 'distill_loss', 'model', 'test_config', 'export',
    'to_static_training', 'seed', 'pseudo_labels', 'mm_tuning', 'on_nonfinite_loss')

# mappings without a type, and the keys PaddleSeg (or this project) reads from them
FIXED_SECTIONS = {'loss': ('types', 'coef'), 'distill_loss': ('types', 'coef'),
                  'export': ('transforms',)}
# evaluate()'s arguments that its callers pass themselves (test_config cannot)
_EVALUATE_OWN = ('model', 'eval_dataset', 'num_workers', 'precision', 'amp_level')
# where a misplaced key is looked for, in this order
CANDIDATES = ('train_dataset', 'val_dataset', 'model', 'model.backbone', 'loss', 'optimizer',
              'lr_scheduler', 'test_config', 'export', 'mm_tuning')


def _node(dic, section):
    node = dic
    for part in section.split('.'):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def section_keys(section, dic):
    """The keys ``section`` takes in config ``dic``, or None when unknown
    (a section the config lacks, or a class behind ``**kwargs``)."""
    if section in FIXED_SECTIONS:
        return set(FIXED_SECTIONS[section])
    if section == 'test_config':
        from paddleseg.core import evaluate
        return set(inspect.signature(evaluate).parameters) - set(_EVALUATE_OWN)
    if section == 'mm_tuning':
        from .schemas import SCHEMAS
        return set(SCHEMAS['mm_tuning'].fields)
    node = _node(dic, section)
    if not isinstance(node, dict) or not isinstance(node.get('type'), str):
        return None
    from .components import _component, accepted_arguments
    if section == 'optimizer':
        from paddleseg.cvlibs import manager
        obj = manager.OPTIMIZERS.components_dict.get(node['type'])
    elif section == 'lr_scheduler':
        import paddle.optimizer.lr as lr
        obj = getattr(lr, node['type'], None)
    else:
        obj = _component(node['type'])
    return None if obj is None else accepted_arguments(obj)


def belongs(key, dic, here):
    """Where ``key`` (refused at key path ``here``) is taken instead: top
    level, then the sections of :data:`CANDIDATES`; -> list of key paths."""
    if key == 'type':
        return []
    found = [f'{key} (top level)'] if here and key in KNOWN_TOP_LEVEL_KEYS else []
    for section in CANDIDATES:
        if section == here or (section == 'mm_tuning' and section not in dic):
            continue
        keys = section_keys(section, dic)
        if keys and key in keys:
            found.append(f'{section}.{key}')
    return found


def placement(key, dic, here):
    """'; did you mean <section>.<key>?' (the first place found), or ''."""
    found = belongs(key, dic, here)
    return f'; did you mean {found[0]}?' if found else ''


def check_sections(dic, path):
    """Refuse a key of a mapping without a type (``loss``, ``distill_loss``,
    ``test_config``, ``export``, ``mm_tuning``) that it does not take, in one
    line naming its path and where it belongs."""
    for section in tuple(FIXED_SECTIONS) + ('test_config', 'mm_tuning'):
        node = dic.get(section)
        if not isinstance(node, dict):
            continue
        keys = section_keys(section, dic)
        for key in node:
            if key in keys:
                continue
            hint = placement(key, dic, section)
            if not hint and section == 'mm_tuning':
                continue   # its schema refuses it, with a spelling hint
            if not hint:
                hint = f" (it takes {', '.join(sorted(keys))}){suggest(key, keys)}"
            raise PSSLError(f'{path}: {section}.{key}: not a key of {section}{hint}')
