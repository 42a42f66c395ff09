"""Classifier input preprocessing (numpy only, no paddle import).

``preprocess_images`` does: RGB, resize the short side to ``resize_short``
(bilinear, PIL), centre crop ``crop_size`` x ``crop_size``, ``(x - mean) / std``
with mean/std in 0..255 pixel units, HWC -> NCHW float32.

Normalisations:
  * EfficientNet-Lite (TF reference): mean 127, std 128 on every channel
    (:data:`LITE_MEAN`, :data:`LITE_STD`);
  * PaddleClas / torchvision ImageNet models: :data:`IMAGENET_MEAN`,
    :data:`IMAGENET_STD` (i.e. [0.485, 0.456, 0.406] * 255 etc.).

``resize_short_for(input_size)`` is ``round(input_size * 256 / 224)``: 256 for
224, 274 for 240, 297 for 260 (the 224/256 crop ratio).
"""
import os
from typing import Sequence, Union

import numpy as np
from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE_MEAN",
    "LITE_STD",
    "load_rgb",
    "preprocess_images",
    "resize_short_for",
]

LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

ImageLike = Union[np.ndarray, Image.Image, str, os.PathLike]


def resize_short_for(input_size: int) -> int:
    return int(round(input_size * 256.0 / 224.0))


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


def preprocess_images(images: Union[ImageLike, Sequence[ImageLike]], crop_size: int = 224,
                      resize_short: int = None, mean=LITE_MEAN, std=LITE_STD) -> np.ndarray:
    """One image or a list of images -> float32 array [N, 3, crop, crop]."""
    if isinstance(images, (list, tuple)):
        items = list(images)
    else:
        items = [images]
    if resize_short is None:
        resize_short = resize_short_for(crop_size)
    mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
    std = np.asarray(std, np.float32).reshape(1, 1, 3)
    out = [((_resize_crop(load_rgb(im), resize_short, crop_size) - mean) / std)
           .transpose(2, 0, 1) for im in items]
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)
