"""The one reader of a classification set on disk (images and their class),
used by label generation, relabelling and classifier training.

Two layouts: class-per-folder, ``<image_root>/train/<class>/*`` (ImageNet)
or ``<image_root>/<class>/*``; or a file list of ``<path relative to
image_root> <class_id>`` lines plus a synsets file (one class name per line,
line index = class id). Either way the image's folder is its class's name,
which is what the label store's paths and upstream's reader rely on.
A file-list path must stay inside image_root: absolute paths and ``..``
parts are refused (the label store mirrors the path). An empty class folder
keeps its class id and gets a warning line.
"""
import os
from dataclasses import dataclass

from ..pseudo_labels import store
from ..utils.errors import PSSLError

__all__ = ['IMAGE_SUFFIXES', 'SourceItem', 'list_source']

IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.png', '.bmp', '.tif', '.tiff', '.webp')


@dataclass
class SourceItem:
    image_path: str
    rel: str          # image path relative to image_root, e.g. train/<class>/<file>
    class_id: int
    class_name: str


def list_source(image_root, file_list=None, synsets=None, key='source'):
    """The classification set as SourceItems, and the class names by id.

    ``synsets`` fixes the ids; by default they are the sorted class folders.
    A file list needs ``synsets``. ``key`` is the config section the paths
    came from; error messages name ``<key>.image_root`` etc.
    """
    if not image_root:
        raise PSSLError(f'{key}.image_root is required')
    if not os.path.isdir(image_root):
        raise PSSLError(f'{image_root}: {key}.image_root is not a directory')
    for sub, path in (('file_list', file_list), ('synsets', synsets)):
        if path and not os.path.isfile(path):
            raise PSSLError(f'{path}: {key}.{sub} not found')
    names = store.read_synsets(synsets) if synsets else None
    if file_list:
        if names is None:
            raise PSSLError(f'{file_list}: a file list needs {key}.synsets (class names by id)')
        return _from_file_list(image_root, file_list, synsets, names, key), names
    return _from_folders(image_root, synsets, names)


def _from_file_list(image_root, file_list, synsets, names, key='source'):
    items = []
    with open(file_list) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                raise PSSLError(f'{file_list}:{lineno}: expected "<path> <class_id>"')
            rel, class_id = parts[0].replace('\\', '/'), int(parts[1])
            problem = store.relpath_problem(rel, f'{key}.image_root')
            if problem:
                raise PSSLError(f'{file_list}:{lineno}: {problem}')
            if not 0 <= class_id < len(names):
                raise PSSLError(f'{file_list}:{lineno}: class id {class_id} is not in '
                                f'{synsets} ({len(names)} classes)')
            folder = rel.split('/')[-2] if '/' in rel else ''
            if folder != names[class_id]:
                raise PSSLError(f'{file_list}:{lineno}: {rel} is not in a folder named '
                                f'{names[class_id]!r} (class {class_id})')
            items.append(SourceItem(os.path.join(image_root, rel), rel, class_id, names[class_id]))
    return items


def _from_folders(image_root, synsets, names):
    base, prefix = image_root, ''
    if os.path.isdir(os.path.join(image_root, 'train')):
        base, prefix = os.path.join(image_root, 'train'), 'train/'
    folders = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))
    if not folders:
        raise PSSLError(f'{base}: no class folders')
    if names is None:
        names = folders
    index = {n: i for i, n in enumerate(names)}
    items = []
    for folder in folders:
        if folder not in index:
            raise PSSLError(f'{os.path.join(base, folder)}: class folder is not in {synsets}')
        files = [f for f in sorted(os.listdir(os.path.join(base, folder)))
                 if f.lower().endswith(IMAGE_SUFFIXES)]
        if not files:
            from paddleseg.utils import logger
            logger.warning(f'{os.path.join(base, folder)}: class folder has no images '
                           f'(it keeps its class id)')
        for file in files:
            rel = f'{prefix}{folder}/{file}'
            items.append(SourceItem(os.path.join(image_root, rel), rel, index[folder], folder))
    if len(names) > store.BACKGROUND:
        raise PSSLError(f'{image_root}: {len(names)} classes; at most {store.BACKGROUND} fit PSSL')
    return items, names
