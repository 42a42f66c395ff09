"""Triplet loss of Mix-and-Match tuning (docs/methods.md section 4).

    L = 1/(2N) * sum_t max(0, alpha + ||f_a - f_p||^2 - ||f_a - f_n||^2)

on L2-normalised features, N triplets, alpha = 2.1. With unit vectors the
squared distances lie in [0, 4], so alpha = 2.1 keeps most triplets active.
The triplets come from ``paddle_pssl.mm_tuning.build_triplets``.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

__all__ = ["MixMatchTripletLoss", "triplet_margin_loss"]


def _to_index(index):
    if not isinstance(index, paddle.Tensor):
        index = paddle.to_tensor(index)
    return index.astype('int64').reshape([-1])


def triplet_margin_loss(embeddings, anchor, positive, negative, margin=2.1):
    """The M&M triplet loss on already normalised embeddings [P, D]."""
    anchor, positive, negative = (_to_index(i) for i in (anchor, positive, negative))
    if anchor.shape[0] == 0:
        # no triplet in this batch: a zero that still belongs to the graph
        return embeddings.sum() * 0.0
    f_a = paddle.gather(embeddings, anchor)
    f_p = paddle.gather(embeddings, positive)
    f_n = paddle.gather(embeddings, negative)
    d_ap = ((f_a - f_p)**2).sum(axis=1)
    d_an = ((f_a - f_n)**2).sum(axis=1)
    hinge = F.relu(margin + d_ap - d_an)
    return hinge.sum() / (2.0 * anchor.shape[0])


@manager.LOSSES.add_component
class MixMatchTripletLoss(nn.Layer):
    """Triplet loss on L2-normalised patch features (Mix-and-Match tuning).

    Args:
        margin (float): alpha, 2.1 in the paper.
        feature_index (int): which entry to use when ``features`` is a list of
            feature maps (PaddleSeg backbones return one per stage); -1 = last.
        epsilon (float): guards the normalisation of an all-zero feature.

    forward(features, anchor, positive=None, negative=None):
        features: [P, D] vectors, or [P, C, h, w] maps (global-average-pooled
            first), or a list/tuple of such maps.
        anchor, positive, negative: [T] int index tensors (or arrays) into P;
            alternatively ``anchor`` alone as a [T, 3] tensor of triplets.
        Returns a scalar tensor; 0 (still differentiable) when T = 0.
    """

    def __init__(self, margin=2.1, feature_index=-1, epsilon=1e-12):
        super().__init__()
        self.margin = float(margin)
        self.feature_index = feature_index
        self.epsilon = epsilon

    def embed(self, features):
        """Pool (if a map) and L2-normalise: [P, D]."""
        if isinstance(features, (list, tuple)):
            features = features[self.feature_index]
        if features.ndim == 4:
            features = features.mean(axis=[2, 3])
        elif features.ndim != 2:
            raise ValueError("MixMatchTripletLoss: features must be [P, D] or "
                             "[P, C, h, w], got shape {}".format(features.shape))
        return F.normalize(features, p=2, axis=1, epsilon=self.epsilon)

    def forward(self, features, anchor, positive=None, negative=None):
        if positive is None and negative is None:
            triplets = _to_index(anchor).reshape([-1, 3])
            anchor, positive, negative = triplets[:, 0], triplets[:, 1], triplets[:, 2]
        elif positive is None or negative is None:
            raise ValueError("MixMatchTripletLoss: give positive and negative, "
                             "or a [T, 3] triplet tensor alone")
        return triplet_margin_loss(self.embed(features), anchor, positive,
                                   negative, self.margin)
