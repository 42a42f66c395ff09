"""paddle-pssl: pre-train segmentation models on pseudo labels distilled from
explanations of image classifiers (PSSL), in PaddleSeg's style.

Importing the package registers its components (datasets, losses, models,
transforms) in ``paddleseg.cvlibs.manager``, so a YAML ``type:`` finds them.
"""
from . import _zlib_first  # noqa: F401  must precede any paddle import

from . import _paddleseg_compat  # noqa: E402,F401  (paddleseg 2.8 on paddle 2.6)
from . import datasets, losses, core, mm_tuning  # noqa: E402,F401  (registration)

__version__ = "0.1.0"
