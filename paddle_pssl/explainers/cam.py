"""CAM and GradCAM from one forward of the batch.

CAM (Zhou et al. 2016), exact for a classifier ending in global average
pooling + one linear layer: ``cam_c(i, j) = sum_k W[c, k] * f_k(i, j)`` with
``W = classifier.fc_weight()`` ([num_classes, C], read at call time)
(``+ b_c`` with ``include_bias=True``, so that the map's spatial mean is the
logit). GradCAM (Selvaraju et al. 2017) as InterpretDL 0.8.0 computes it:
channel weights = spatial mean of d score / d features, map =
``ReLU(mean_k weight_k * f_k)``. For a GAP + linear head and ``gradient_of='logit'``
GradCAM is CAM / (C * h * w) after the ReLU, so the normalised maps coincide.

Both maps get their ReLU at feature resolution, then bilinear upsampling to
the input size (ReLU and upsampling do not commute; this is the order of
InterpretDL's GradCAM and of pytorch-grad-cam). CAM's ``relu=False`` keeps the
signed map. Normalisation (default ``'relu_max'``): division by the map's max.
Options: ``'minmax'``, ``'abs_max'``, ``'percentile'``, or ``None`` for the raw
upsampled maps.
"""
import numpy as np

from .base import Explainer, upsample


class CAMExplainer(Explainer):
    """Class activation maps from the last features and the linear weights."""

    name = "cam"

    def __init__(self, classifier, include_bias=False, relu=True, **kwargs):
        super().__init__(classifier, **kwargs)
        self.include_bias = include_bias
        self.relu = relu

    def raw(self, images, targets, shared=None, seeds=None):
        shared = shared or self.runner.feature_pass(images)
        feats = shared.features.numpy()  # [N, C, h, w]
        weight = self.classifier.fc_weight()  # [K, C]; raises when there is no exact CAM
        if weight.shape[1] != feats.shape[1]:
            raise ValueError(f"CAM: the fc layer has {weight.shape[1]} input channels but the feature map "
                             f"has {feats.shape[1]}; the feature layer must feed the pooling + fc head")
        cams = np.einsum("nchw,nc->nhw", feats, weight[targets])
        if self.include_bias:
            cams = cams + self.classifier.fc_bias()[targets].reshape(-1, 1, 1)
        if self.relu:
            cams = np.maximum(cams, 0)
        return upsample(cams, images.shape[2:])


class GradCAMExplainer(Explainer):
    """GradCAM on the classifier's feature layer.

    gradient_of: ``'logit'`` (default: the GradCAM paper's class score, and the
    choice for which GradCAM equals CAM on GAP + linear models) or
    ``'probability'`` (InterpretDL 0.8.0's choice).
    """

    name = "gradcam"

    def __init__(self, classifier, gradient_of="logit", **kwargs):
        super().__init__(classifier, **kwargs)
        if gradient_of not in ("logit", "probability"):
            raise ValueError(f"gradient_of must be 'logit' or 'probability', got {gradient_of!r}")
        self.gradient_of = gradient_of

    def raw(self, images, targets, shared=None, seeds=None):
        shared = shared or self.runner.feature_pass(images)
        grads = shared.feature_gradients(targets, self.gradient_of)
        feats = shared.features.numpy()
        return upsample(gradcam_from_features(feats, grads), images.shape[2:])


def gradcam_from_features(features, gradients):
    """InterpretDL 0.8.0's GradCAM formula on [N, C, h, w] arrays -> [N, h, w]."""
    weights = gradients.mean(axis=(2, 3), keepdims=True)
    return np.maximum((weights * features).mean(1), 0)
