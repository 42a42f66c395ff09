"""From explanation maps to a pseudo mask and a per-pixel confidence.

Each map is an explainer's saliency for the image's own class, float in [0, 1]
at image size (the explainers normalise; ``renormalize`` can redo it here).
The consensus is their (weighted) mean; a threshold turns it into a binary
mask (1 = object); the confidence of a pixel is the share of the individual
maps that, thresholded the same way, agree with the consensus label there.
"""
import numpy as np

from ..utils.errors import PSSLError

THRESHOLDS = ('fixed', 'mean', 'otsu', 'percentile')
RENORMALIZE = ('none', 'max', 'minmax', 'rank')


def renormalize(saliency, method='none'):
    """Per-map rescaling before aggregation: 'max' divides by the max,
    'minmax' stretches to [0, 1], 'rank' replaces values by their quantile
    (puts every explainer on the same scale whatever its value distribution)."""
    saliency = np.asarray(saliency, dtype=np.float32)
    if method == 'none':
        return saliency
    if method == 'max':
        peak = float(saliency.max())
        return saliency / peak if peak > 0 else saliency
    if method == 'minmax':
        low, high = float(saliency.min()), float(saliency.max())
        return (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)
    if method == 'rank':
        flat = saliency.ravel()
        order = np.argsort(flat, kind='stable')
        ranks = np.empty(flat.size, np.float32)
        ranks[order] = np.arange(flat.size, dtype=np.float32)
        return (ranks / max(flat.size - 1, 1)).reshape(saliency.shape)
    raise PSSLError(f'unknown renormalize {method!r}; choose one of {RENORMALIZE}')


def threshold_value(saliency, method='mean', value=0.5):
    """The cut for one map. 'fixed': ``value``; 'mean': ``value`` x the map's
    mean (upstream's consensus examples cut at a multiple of the mean);
    'otsu': Otsu's threshold (scikit-image); 'percentile': keep the top
    ``value`` fraction of pixels."""
    saliency = np.asarray(saliency, dtype=np.float32)
    if method == 'fixed':
        return float(value)
    if method == 'mean':
        return float(value) * float(saliency.mean())
    if method == 'otsu':
        if float(saliency.max()) <= float(saliency.min()):
            return float(saliency.max()) + 1.0
        from skimage.filters import threshold_otsu
        return float(threshold_otsu(saliency))
    if method == 'percentile':
        return float(np.quantile(saliency, 1.0 - float(value)))
    raise PSSLError(f'unknown threshold {method!r}; choose one of {THRESHOLDS}')


def consensus_map(maps, weights=None, renorm='none'):
    """Weighted mean of ``maps`` (a list of [H, W] arrays in [0, 1])."""
    if not len(maps):
        raise PSSLError('consensus of no maps')
    stack = np.stack([renormalize(m, renorm) for m in maps]).astype(np.float32)
    if weights is None:
        return stack.mean(axis=0)
    weights = np.asarray(weights, np.float32)
    return np.tensordot(weights / weights.sum(), stack, axes=1).astype(np.float32)


def pseudo_mask(consensus, method='mean', value=0.5):
    """1 where the consensus is above its threshold."""
    return (consensus > threshold_value(consensus, method, value)).astype(np.uint8)


def agreement_confidence(maps, mask, method='mean', value=0.5, renorm='none'):
    """Share of the maps whose own thresholded mask agrees with ``mask``."""
    votes = np.stack([pseudo_mask(renormalize(m, renorm), method, value) for m in maps])
    return (votes == mask[None]).mean(axis=0).astype(np.float32)


def make_pseudo_label(maps, weights=None, renorm='none', method='mean', value=0.5):
    """-> (consensus [H, W], mask uint8 [H, W], confidence float32 [H, W])."""
    consensus = consensus_map(maps, weights, renorm)
    mask = pseudo_mask(consensus, method, value)
    confidence = agreement_confidence(maps, mask, method, value, renorm)
    return consensus, mask, confidence
