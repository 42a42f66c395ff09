"""Classifier input preprocessing on numpy arrays and PIL images.

``preprocess_images`` does: RGB, resize the short side to ``resize_short``
(bilinear, PIL), centre crop ``crop_size`` x ``crop_size``, then
:func:`normalize_rgb`. ``normalize_rgb`` is the one place uint8 pixels become
model input: ``(x - 255 mean) / (255 std)`` in float32, HWC -> NCHW, with
mean/std in 0..1 units (see :mod:`.default_cfgs`).
"""
import os
from typing import Sequence, Union

import numpy as np
from PIL import Image

from .default_cfgs import DEFAULT_CFGS, resize_short_for

__all__ = [
    "load_rgb",
    "normalize_rgb",
    "pixel_units",
    "preprocess_images",
]

ImageLike = Union[np.ndarray, Image.Image, str, os.PathLike]


def pixel_units(values) -> np.ndarray:
    """0..1 mean or std -> float32 0..255 values (the product taken in float64)."""
    return np.asarray(np.asarray(values, np.float64) * 255.0, np.float32)


def normalize_rgb(images, mean, std) -> np.ndarray:
    """RGB [N, H, W, 3] (uint8 or float 0..255) -> float32 [N, 3, H, W] model input."""
    x = np.asarray(images).astype(np.float32)
    x = (x - pixel_units(mean)) / pixel_units(std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def load_rgb(image: ImageLike) -> Image.Image:
    """A path, PIL image or HxW / HxWx{1,3,4} uint8 array -> RGB PIL image."""
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        # floats in [0, 1] are the only other form we accept without guessing
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.min() >= 0 \
                and arr.max() <= 1:
            arr = np.round(arr * 255).astype(np.uint8)
        else:
            raise ValueError("image arrays must be uint8 (0..255) or float in [0, 1], "
                             "got %s" % arr.dtype)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return Image.fromarray(arr[:, :, :3], "RGB")
    raise ValueError("expected an HxW or HxWxC image, got shape %s" % (arr.shape,))


def _resize_crop(im: Image.Image, resize_short: int, crop_size: int) -> np.ndarray:
    w, h = im.size
    scale = resize_short / float(min(w, h))
    nw, nh = max(crop_size, int(round(w * scale))), max(crop_size, int(round(h * scale)))
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - crop_size) // 2, (nh - crop_size) // 2
    return np.asarray(im.crop((left, top, left + crop_size, top + crop_size)),
                      dtype=np.float32)


_LITE0 = DEFAULT_CFGS["efficientnet_lite0"]


def preprocess_images(images: Union[ImageLike, Sequence[ImageLike]], crop_size: int = 224,
                      resize_short: int = None, mean=_LITE0.mean, std=_LITE0.std) -> np.ndarray:
    """One image or a list of images -> float32 array [N, 3, crop, crop]; mean/std
    in 0..1 units, EfficientNet-Lite's by default."""
    if isinstance(images, (list, tuple)):
        items = list(images)
    else:
        items = [images]
    if resize_short is None:
        resize_short = resize_short_for(crop_size)
    crops = np.stack([_resize_crop(load_rgb(im), resize_short, crop_size) for im in items])
    return normalize_rgb(crops, mean, std)
