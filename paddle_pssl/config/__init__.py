"""The one place configs are read, for every tool.

- :mod:`.loader`: YAML through ``yaml.safe_load``; ``_base_`` (a path or a
  list, relative to the including file) merged the way PaddleSeg merges
  (mappings key by key, ``_inherited_: false`` replaces a mapping whole,
  earlier bases win over later ones), with cycles and missing bases named in
  one line; ``--opts key.sub=value`` where ``key=null`` (or ``~``/``None``)
  removes the key.
- :mod:`.schemas`: the declared schema of each non-PaddleSeg config kind
  (generator, classifier, mm_tuning, benchmark): defaults, types, ranges and
  choices; :func:`validate` returns a plain nested dict.
- :mod:`.paddleseg`: PaddleSeg-schema configs keep PaddleSeg's ``Config``
  (:func:`load_config`), read through the loader and checked in one line;
  :mod:`.components` checks its ``type:`` mappings (optimizer and
  lr_scheduler included) and their keys by name before anything is built.

Schemas are declared with a small field-spec helper on standard-library
dataclasses (:mod:`.spec`) rather than pydantic: the configs are plain nested
dicts that the code indexes (``cfg['output']['batch_size']``), the checks are
few (type, range, choices, nesting), values must come back exactly as given
(no coercion, so labels and losses stay bit-identical), and pydantic would be
a new dependency beside PaddlePaddle's pinned stack.
"""
from .loader import UNSET, apply_opts, load_yaml, merge_dicts, parse_opt
from .schemas import (POSTPROCESS, PMM_NORMALIZE, SCHEMAS, default_config, mm_tuning_settings,
                      validate)

__all__ = ['UNSET', 'apply_opts', 'load_yaml', 'merge_dicts', 'parse_opt', 'POSTPROCESS',
           'PMM_NORMALIZE', 'SCHEMAS', 'default_config', 'mm_tuning_settings', 'validate', 'load_config',
           'check_config_dict']


def __getattr__(name):
    # PaddleSeg (and Paddle) load only when a PaddleSeg-schema config is read.
    if name in ('load_config', 'check_config_dict', 'KNOWN_TOP_LEVEL_KEYS'):
        from . import paddleseg
        return getattr(paddleseg, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
