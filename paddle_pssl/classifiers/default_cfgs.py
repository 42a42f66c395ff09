"""Per-variant input defaults (the shape of timm's default cfgs): input size,
crop ratio and normalisation of every classifier the registry builds.

Units: ``mean`` and ``std`` are in 0..1 RGB units everywhere in this project,
``x = (rgb / 255 - mean) / std``. The float32 arithmetic on uint8 pixels uses
the same values times 255 (:func:`paddle_pssl.classifiers.preprocess.pixel_units`).

* efficientnet_lite0 / 1 / 2: input 224 / 240 / 260, mean 127/255 and std
  128/255 on every channel (the TensorFlow reference's ``(x - 127) / 128``);
* PaddleClas architectures: input 224, the ImageNet statistics
  (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`) PaddleClas trains with.

Every variant resizes the short side to ``input_size / crop_pct``
(256 for 224) and centre-crops ``input_size``.
"""
from dataclasses import dataclass, replace
from typing import Optional, Tuple

__all__ = ["CROP_PCT", "DEFAULT_CFGS", "IMAGENET_MEAN", "IMAGENET_STD", "InputConfig",
           "PADDLECLAS_DEFAULT", "default_cfg", "lite_key", "resize_short_for"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_PCT = 0.875  # 224 / 256


def resize_short_for(input_size: int, crop_pct: float = CROP_PCT) -> int:
    """Short side before the centre crop: 256 for 224, 274 for 240, 297 for 260."""
    return int(round(input_size / crop_pct))


@dataclass(frozen=True)
class InputConfig:
    """How a classifier wants its input: crop size, crop ratio, mean/std (0..1)."""

    input_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    crop_pct: float = CROP_PCT

    @property
    def resize_short(self) -> int:
        return resize_short_for(self.input_size, self.crop_pct)


_LITE = dict(mean=(127 / 255,) * 3, std=(128 / 255,) * 3)

DEFAULT_CFGS = {
    "efficientnet_lite0": InputConfig(224, **_LITE),
    "efficientnet_lite1": InputConfig(240, **_LITE),
    "efficientnet_lite2": InputConfig(260, **_LITE),
}
# every PaddleClas architecture (no per-architecture entries yet)
PADDLECLAS_DEFAULT = InputConfig(224, IMAGENET_MEAN, IMAGENET_STD)


def lite_key(name) -> Optional[str]:
    """The table key of an EfficientNet-Lite name ("EfficientNet-Lite0" ...), else None."""
    key = str(name).lower().replace("-", "_")
    return key if key in DEFAULT_CFGS else None


def default_cfg(name, input_size: Optional[int] = None) -> InputConfig:
    """The variant's defaults, with ``input_size`` overridden when given."""
    cfg = DEFAULT_CFGS.get(lite_key(name), PADDLECLAS_DEFAULT)
    return replace(cfg, input_size=int(input_size)) if input_size else cfg
