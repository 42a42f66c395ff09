"""paddle-pssl: pre-train segmentation models on pseudo labels distilled from
explanations of image classifiers (PSSL), in PaddleSeg's style.

Importing the package registers its PaddleSeg components (the weighted PSSL
dataset, the losses and the EfficientNet-Lite backbones) in
``paddleseg.cvlibs.manager``, so a YAML ``type:`` finds them beside
PaddleSeg's own; the models and transforms are PaddleSeg's.
"""
from . import _zlib_first  # noqa: F401  must precede any paddle import

import warnings  # noqa: E402

# Paddle 3.3 warns "No ccache found" on every import (its C++-extension
# builder looks for ccache); nothing here compiles extensions, and the line
# would stand before every CLI's output, one-line errors included.
warnings.filterwarnings('ignore', message='No ccache found', category=UserWarning)

from . import _paddleseg_compat  # noqa: E402,F401  (paddleseg 2.8 on paddle 2.6 and 3.3)
from . import datasets, losses, models, core, mm_tuning  # noqa: E402,F401  (registration, shims)

__version__ = "0.1.0"
