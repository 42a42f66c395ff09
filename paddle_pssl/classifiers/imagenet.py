"""ImageNet-1k class names in class-id order (0..999).

The names come from ``ppcls/utils/imagenet1k_label_list.txt`` inside the
installed ``paddleclas`` package (found without importing paddleclas).
No installed package ships the WordNet ids (``n01440764`` ...) in class-id
order; :func:`paddle_pssl.pseudo_labels.store.read_synsets` reads such a list
from a file you provide (e.g. ``imagenet_lsvrc_2015_synsets.txt`` of the PSSL
dataset).
"""
import functools
import importlib.util
import os
from typing import List

__all__ = ["imagenet1k_class_names", "imagenet1k_label_file"]

_LABEL_FILE = os.path.join("ppcls", "utils", "imagenet1k_label_list.txt")


def imagenet1k_label_file() -> str:
    spec = importlib.util.find_spec("paddleclas")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("ImageNet class names come from the PyPI package 'paddleclas'; "
                          "install it with `pip install paddleclas==2.6.0`")
    path = os.path.join(list(spec.submodule_search_locations)[0], _LABEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError("paddleclas is installed but %s is missing" % path)
    return path


@functools.lru_cache(maxsize=1)
def _names():
    names = {}
    with open(imagenet1k_label_file(), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                idx, name = line.split(" ", 1)
                names[int(idx)] = name
    if sorted(names) != list(range(1000)):
        raise ValueError("%s does not list classes 0..999" % imagenet1k_label_file())
    return tuple(names[i] for i in range(1000))


def imagenet1k_class_names(short: bool = False) -> List[str]:
    """1000 names; ``short=True`` keeps only the first synonym ("tench")."""
    names = _names()
    return [n.split(",")[0].strip() for n in names] if short else list(names)

