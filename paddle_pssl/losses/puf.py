"""Pretended Under-Fitting (PUF) cross-entropy, PMM (Li et al., ICCV 2021) part (iii).

Per-pixel CE l_i. Once the network fits the (noisy) pseudo masks well, i.e.
mean(l) < beta, pixels it still gets badly wrong are treated as label noise:
    'clamp'   l_i <- min(l_i, k)            pixels above k give no gradient
    'pow'     l_i <- (l_i + 1e-9) ** k      large losses compressed
    'ignore'  l_i <- l_i * [l_i <= k]       pixels above k give no loss
beta = k = 0.5 on VOC, 0.8 on COCO. Class and pixel weights are applied after
the transform by :class:`PixelWeightedLoss`.

Which mean meets beta: the plain, unweighted mean of l over the valid
(non-ignored) pixels of the whole batch, the paper's "mean loss". PMM's code
(WSSS_MMSeg ``cross_entropy``) instead takes ``loss.mean()`` over all pixels,
ignored ones counting 0, of the class-weighted losses, and clamps those
weighted values; with many ignored pixels it switches on earlier. The switch is
decided on device with ``paddle.where`` (no host sync).
"""
import paddle
from paddleseg.cvlibs import manager

from .weighted_ce import PixelWeightedLoss, pixel_cross_entropy

PUF_TYPES = ('clamp', 'pow', 'ignore')


def pretend_under_fitting(loss, valid, puf_type='clamp', beta=0.5, k=0.5,
                          eps=1e-9):
    """Apply PUF to per-pixel losses ``loss`` [N, H, W] with validity ``valid``."""
    if puf_type not in PUF_TYPES:
        raise ValueError(f'puf_type must be one of {PUF_TYPES}, got {puf_type!r}')
    valid_f = valid.astype(loss.dtype)
    mean_loss = (loss.detach() * valid_f).sum() / valid_f.sum().clip(min=1.0)
    if puf_type == 'clamp':
        # clip's gradient is 0 outside [min, max]: clamped pixels stop learning
        transformed = paddle.clip(loss, max=k)
    elif puf_type == 'pow':
        transformed = paddle.pow(loss + eps, k)  # eps: finite gradient at l = 0
    else:
        transformed = loss * (loss <= k).astype(loss.dtype)
    return paddle.where(mean_loss < beta, transformed, loss)


@manager.LOSSES.add_component
class PUFCrossEntropyLoss(PixelWeightedLoss):
    """Cross-entropy with PMM's Pretended Under-Fitting, class and pixel weights.

    Args:
        puf_type (str): 'clamp' (paper), 'pow' or 'ignore'.
        beta (float): PUF switches on when the mean valid-pixel CE is below beta.
        k (float): clamp / ignore threshold, or the power.
        weight, background_weight, background_index, ignore_index: as in
            :class:`PSSLCrossEntropyLoss`.
    """

    def __init__(self, puf_type='clamp', beta=0.5, k=0.5, weight=None,
                 background_weight=None, background_index=None,
                 ignore_index=255, eps=1e-8):
        super().__init__(weight=weight, background_weight=background_weight,
                         background_index=background_index,
                         ignore_index=ignore_index, eps=eps)
        if puf_type not in PUF_TYPES:
            raise ValueError(
                f'puf_type must be one of {PUF_TYPES}, got {puf_type!r}')
        self.puf_type = puf_type
        self.beta = float(beta)
        self.k = float(k)

    def per_pixel_loss(self, logit, label):
        ce, valid = pixel_cross_entropy(logit, label, self.ignore_index)
        return pretend_under_fitting(ce, valid, self.puf_type, self.beta,
                                     self.k), valid
