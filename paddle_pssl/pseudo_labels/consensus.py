"""From explanation maps to a pseudo mask and a per-pixel confidence.

Each map is an explainer's saliency for the image's own class, float in [0, 1]
at image size (the explainers normalise; ``renormalize`` can redo it here).
``consensus.method`` combines them:
  'mean'         their (weighted) mean;
  'loo'          a mean weighted by each map's agreement with the others
                 (:func:`.consensus_em.loo_weights`);
  'staple'       the STAPLE-style EM posterior of each pixel being object, from
                 the maps cut one by one by the member rule (``member_threshold``);
  'soft_staple'  the same EM with the maps themselves as soft votes.
A threshold rule, computed per image, turns the consensus into a binary mask
(1 = object); 'posterior' cuts at 0.5 (for the EM methods: the more probable
label). The confidence of a pixel is, for 'mean' and 'loo', the (weighted)
share of the maps that, thresholded the same way, agree with the consensus
label there; for the EM methods the posterior of the chosen label,
max(W, 1 - W).

Two options make the mask err towards too little foreground, where the maps'
coarse blobs spill over the object:
  ``bias``           raises any rule's cut that fraction of the way from its
                     value to the map's peak (0: the rule's own cut; the
                     votes behind the confidence are cut the same way);
  per classifier     (:func:`per_classifier_label`) each classifier's maps
                     are combined and cut on their own, and a pixel is object
                     where at least ``quorum`` of the classifiers say so
                     (1.0: all of them).
"""
import numpy as np

from . import consensus_em
from ..utils.errors import PSSLError

THRESHOLDS = ('fixed', 'mean', 'otsu', 'percentile', 'posterior')
METHODS = ('mean', 'loo', 'staple', 'soft_staple')
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


def threshold_value(saliency, method='mean', value=0.5, bias=0.0):
    """The cut for one map. 'fixed': ``value``; 'mean': ``value`` x the map's
    mean (upstream's consensus examples cut at a multiple of the mean);
    'otsu': Otsu's threshold (scikit-image); 'percentile': keep the top
    ``value`` fraction of pixels; 'posterior': 0.5. ``bias`` in [0, 1) moves
    the cut that fraction of the way up to the map's peak."""
    saliency = np.asarray(saliency, dtype=np.float32)
    cut = _rule_value(saliency, method, value)
    if bias:
        peak = float(saliency.max())
        if peak > cut:
            cut = cut + float(bias) * (peak - cut)
    return cut


def _rule_value(saliency, method, value):
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
    if method == 'posterior':
        return 0.5
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


def pseudo_mask(consensus, method='mean', value=0.5, bias=0.0):
    """1 where the consensus is above its threshold."""
    return (consensus > threshold_value(consensus, method, value, bias)).astype(np.uint8)


def agreement_confidence(maps, mask, method='mean', value=0.5, renorm='none', bias=0.0):
    """Share of the maps whose own thresholded mask agrees with ``mask``."""
    votes = np.stack([pseudo_mask(renormalize(m, renorm), method, value, bias) for m in maps])
    return (votes == mask[None]).mean(axis=0).astype(np.float32)


def member_rule(method, value, member_method=None, member_value=None):
    """The rule that cuts each map into STAPLE's binary votes: the given one,
    else the mask rule, except that 'posterior' (which means nothing on a raw
    map) becomes Otsu."""
    if member_method is None:
        member_method = 'otsu' if method == 'posterior' else method
    return member_method, value if member_value is None else member_value


def make_pseudo_label(maps, weights=None, renorm='none', method='mean', value=0.5,
                      combine='mean', member_method=None, member_value=None, bias=0.0):
    """-> (consensus [H, W], mask uint8 [H, W], confidence float32 [H, W]).

    ``combine`` is one of METHODS; ``member_method``/``member_value`` the
    per-map cut for 'staple' (see :func:`member_rule`); ``bias`` raises the
    mask's cut (see :func:`threshold_value`)."""
    if combine == 'mean':
        consensus = consensus_map(maps, weights, renorm)
        mask = pseudo_mask(consensus, method, value, bias)
        confidence = agreement_confidence(maps, mask, method, value, renorm, bias)
        return consensus, mask, confidence
    if not len(maps):
        raise PSSLError('consensus of no maps')
    stack = np.stack([renormalize(m, renorm) for m in maps]).astype(np.float32)
    if combine == 'loo':
        loo = consensus_em.loo_weights(stack)
        if weights is not None:
            loo = loo * np.asarray(weights, np.float64)
        if not loo.sum() > 0:
            loo = np.ones(len(stack))
        loo = (loo / loo.sum()).astype(np.float32)
        consensus = np.tensordot(loo, stack, axes=1).astype(np.float32)
        mask = pseudo_mask(consensus, method, value, bias)
        votes = np.stack([pseudo_mask(m, method, value, bias) for m in stack])
        confidence = np.tensordot(loo, (votes == mask[None]).astype(np.float32), axes=1)
        return consensus, mask, confidence.astype(np.float32)
    if combine not in METHODS:
        raise PSSLError(f'unknown consensus.method {combine!r}; choose one of {METHODS}')
    if weights is not None:
        raise PSSLError(f'consensus.weights applies to methods mean and loo, not {combine}')
    if combine == 'staple':
        rule = member_rule(method, value, member_method, member_value)
        votes = np.stack([pseudo_mask(m, *rule) for m in stack])
    else:
        votes = np.clip(stack, 0.0, 1.0)
    posterior = consensus_em.staple(votes)[0]
    mask = pseudo_mask(posterior, method, value, bias)
    confidence = np.maximum(posterior, 1.0 - posterior).astype(np.float32)
    return posterior, mask, confidence


def classifier_of(name):
    """'<classifier label>/<explainer>' -> the classifier label."""
    return name.rsplit('/', 1)[0]


def per_classifier_label(groups, quorum=0.5, **rule):
    """A cut per classifier before the consensus. ``groups``: one
    (maps, weights or None) per classifier; each is made into a mask by
    :func:`make_pseudo_label` with ``rule``, and a pixel is object where at
    least ``quorum`` of those masks say so. -> (mean of the classifiers'
    consensus maps, mask, confidence). A classifier's confidence is its
    share (or posterior) for its own label, so for the chosen label it is
    that value where the two agree and 1 minus it elsewhere; the
    confidence is the mean of these over the classifiers."""
    if not len(groups):
        raise PSSLError('consensus of no maps')
    parts = [make_pseudo_label(maps, weights, **rule) for maps, weights in groups]
    votes = np.stack([mask for _, mask, _ in parts])
    # the quorum as a count of classifiers: no float rounding at k / n
    mask = (votes.sum(axis=0) >= np.ceil(float(quorum) * len(votes) - 1e-9)).astype(np.uint8)
    consensus = np.mean([c for c, _, _ in parts], axis=0).astype(np.float32)
    own = np.stack([c for _, _, c in parts])
    confidence = np.where(votes == mask[None], own, 1.0 - own).mean(axis=0).astype(np.float32)
    return consensus, mask, confidence


# The working resolution. An image whose long side is at most WORK_MAX_SIDE
# is labelled at its own size, exactly as before the bound existed (the bound
# is above the few thousand pixels a side of the largest ImageNet photos). A
# larger one is shrunk (INTER_AREA, decoded at 1/2..1/8 where OpenCV can) to a
# long side of HUGE_WORK_SIDE right after reading: the explainers' maps, the
# consensus and PMM work at that size, and only its mask and confidence are
# brought back to the image's own size (:func:`upscale_nearest`) to be
# written. The maps come from classifiers that see 224-448 px, so nothing of
# them is lost at 2048 px. Memory for such an image is then the decode, the
# working-size consensus and the full-size uint8 mask and float16 confidence.
WORK_MAX_SIDE = 4096
HUGE_WORK_SIDE = 2048
_UPSCALE_ROWS = 512


def working_shape(shape):
    """(h, w) of the working resolution for an image of ``shape`` (H, W)."""
    if max(shape[:2]) <= WORK_MAX_SIDE:
        return tuple(shape[:2])
    scale = HUGE_WORK_SIDE / max(shape[:2])
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def upscale_nearest(small, shape, dtype):
    """``small`` [h, w] brought to ``shape`` (H, W) by nearest neighbour (pixel
    centres) as one ``dtype`` array: columns first (an [h, W] array), then
    rows copied a block at a time, so no full-size temporary is made."""
    (h, w), (height, width) = small.shape[:2], shape

    def index(n, size):
        return np.minimum(((np.arange(n) + 0.5) * size / n).astype(np.int64), size - 1)
    rows = index(height, h)
    wide = np.take(small.astype(dtype, copy=False), index(width, w), axis=1)
    out = np.empty((height, width), dtype)
    for y in range(0, height, _UPSCALE_ROWS):
        np.take(wide, rows[y:y + _UPSCALE_ROWS], axis=0, out=out[y:y + _UPSCALE_ROWS])
    return out
