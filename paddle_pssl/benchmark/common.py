"""Names and small helpers that the benchmark's stages, extensions and report
share (kept apart so that none of them imports another's module)."""
import os

import yaml

from ..utils.errors import PSSLError
from ..utils.io import atomic_write_text

INITS = {
    'a_random': '(a) random init',
    'b_classifier_backbone': '(b) classifier backbone + random head',
    'c_pssl_class_weighted': '(c) PSSL end-to-end, class-weighted loss',
    'c_pssl_pixel_weighted': "(c') PSSL end-to-end, pixel-weighted loss",
}


def scaled(n, scale, minimum=1):
    return max(int(round(n * scale)), minimum)


def write_yaml(path, dic):
    atomic_write_text(path, yaml.safe_dump(dic, sort_keys=False))
    return path


def config_path(path, key='benchmark config'):
    """A config named by the benchmark config, as an absolute path. Relative
    paths are read from the current folder, as PaddleSeg's tools read theirs
    (run from the repository root, or give absolute paths)."""
    resolved = os.path.abspath(path)
    if not os.path.isfile(resolved):
        raise PSSLError(f'{key}: {path} not found (relative paths are read from '
                        f'{os.getcwd()})')
    return resolved


def source_id(row):
    """The name of a pretrained row's label source (its store folder's suffix)."""
    spec = row['labels']
    if spec['kind'] == 'generated':
        return f"generated_{row['key']}" if spec.get('overrides') or spec.get('config') else 'generated'
    if spec['kind'] == 'degraded':
        return f"{spec['degrade']}_{spec['target_miou']:g}"
    return spec['kind']
