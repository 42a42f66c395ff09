"""Label stores of known quality, made from the source set's exact masks:
the benchmark's ceiling, floor and dose-response rows.

    exact      the exact masks (confidence 1): what perfect labels give;
    shuffled   each image gets the exact mask of another image (a fixed
               derangement): the right foreground share, in the wrong place;
    degraded   the exact masks degraded in one known way to a target label
               mIoU (``degrade`` and ``target_miou``):
                 erode / dilate  a disk of radius r per image;
                 shift           moved r pixels in a random direction;
                 blot            r random discs (radius 1/6 of the image) flipped;
                 box             the bounding box grown by r pixels a side.

The strength r is continuous: image i gets floor(r) or floor(r) + 1 (the
latter with probability frac(r), from a draw fixed per image), so the set's
mIoU falls smoothly as r grows and a bisection on r reaches the target.
Every random draw is fixed per image by ``seed``: the same settings give the
same store. Stores are written by the one store writer, in the format the
generator writes, so the same dataset and loss read them.
"""
import json
import os
import shutil

import cv2
import numpy as np

from ..pseudo_labels.evaluate import IoUCounter, gt_path, read_gt_mask
from ..pseudo_labels.writer import Label, LabelStoreWriter
from ..utils.errors import PSSLError

DEGRADATIONS = ('erode', 'dilate', 'shift', 'blot', 'box')
BLOTS_MAX = 64


def _disk(radius):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


class Draws:
    """The random draws of one image, fixed for every strength."""

    def __init__(self, seed, index, shape):
        rng = np.random.default_rng([seed, index])
        self.step = rng.uniform()                    # floor(r) + 1 when frac(r) > step
        self.angle = rng.uniform(0, 2 * np.pi)       # shift direction
        self.blots = rng.uniform(size=(BLOTS_MAX, 2)) * np.array(shape[::-1])
        self.blot_radius = max(int(round(min(shape) / 6)), 1)


def _whole(strength, draws):
    base = int(np.floor(strength))
    return base + int(strength - base > draws.step)


def degrade(mask, kind, strength, draws):
    """``mask`` (uint8 0/1) degraded by ``kind`` at ``strength`` >= 0."""
    mask = mask.astype(np.uint8)
    if kind == 'shift':
        # continuous distance: the fraction moves it one pixel further along
        # the image's fixed direction with probability frac(strength)
        dist = _whole(strength, draws)
        dx, dy = int(round(dist * np.cos(draws.angle))), int(round(dist * np.sin(draws.angle)))
        shifted = np.zeros_like(mask)
        h, w = mask.shape
        ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
        yd, xd = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
        if ys.stop > ys.start and xs.stop > xs.start:
            shifted[ys, xs] = mask[yd, xd]
        return shifted
    r = _whole(strength, draws)
    if r == 0:
        return mask.copy()
    if kind == 'erode':
        return cv2.erode(mask, _disk(r))
    if kind == 'dilate':
        return cv2.dilate(mask, _disk(r))
    if kind == 'blot':
        flips = np.zeros_like(mask)
        for x, y in draws.blots[:min(r, BLOTS_MAX)]:
            cv2.circle(flips, (int(x), int(y)), draws.blot_radius, 1, -1)
        return mask ^ flips
    if kind == 'box':
        ys, xs = np.nonzero(mask)
        out = np.zeros_like(mask)
        if len(ys):
            h, w = mask.shape
            out[max(ys.min() - r + 1, 0):min(ys.max() + r, h), max(xs.min() - r + 1, 0):min(xs.max() + r, w)] = 1
        return out
    raise PSSLError(f'degrade: unknown kind {kind!r} (one of {", ".join(DEGRADATIONS)})')


def _max_strength(kind, shape):
    return float(BLOTS_MAX) if kind == 'blot' else float(max(shape))


def set_miou(masks, gts, class_ids):
    counter = IoUCounter()
    for mask, gt, cid in zip(masks, gts, class_ids):
        counter.add(mask, gt, cid)
    return counter.result()['miou']


def fit_strength(gts, class_ids, kind, target, seed=0, tol=0.002, steps=40):
    """(strength, mIoU) of ``kind`` whose degraded set's mIoU is nearest
    ``target``, by bisection (mIoU falls as the strength grows)."""
    draws = [Draws(seed, i, g.shape) for i, g in enumerate(gts)]

    def score(s):
        return set_miou([degrade(g, kind, s, d) for g, d in zip(gts, draws)], gts, class_ids)

    low, high = 0.0, _max_strength(kind, gts[0].shape)
    at_low, at_high = score(low), score(high)
    if not at_high - 1e-9 <= target <= at_low + 1e-9:
        raise PSSLError(f'degrade {kind}: target_miou {target} is out of reach '
                        f'(from {at_low:.3f} at strength 0 to {at_high:.3f})')
    best = min(((low, at_low), (high, at_high)), key=lambda p: abs(p[1] - target))
    for _ in range(steps):
        mid = (low + high) / 2
        value = score(mid)
        if abs(value - target) < abs(best[1] - target):
            best = (mid, value)
        if abs(value - target) <= tol:
            break
        low, high = (mid, high) if value > target else (low, mid)
    return best


def shuffled_order(n, seed=0):
    """A fixed derangement of range(n): no image keeps its own mask."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    for i in range(n):
        if order[i] == i:
            j = (i + 1) % n
            order[i], order[j] = order[j], order[i]
    return order


def source_masks(source, items):
    """The exact masks of ``items`` (SourceItems), in order."""
    return [read_gt_mask(gt_path(source['gt_root'], it.rel)) for it in items]


def make_masks(spec, gts, class_ids, seed=0):
    """(masks, facts) of a label source ``spec`` ({kind, degrade,
    target_miou}) from the exact masks ``gts``."""
    kind = spec['kind']
    if kind == 'exact':
        return [g.copy() for g in gts], {}
    if kind == 'shuffled':
        order = shuffled_order(len(gts), seed)
        masks = [cv2.resize(gts[j], gts[i].shape[::-1], interpolation=cv2.INTER_NEAREST)
                 for i, j in enumerate(order)]
        return masks, {}
    if kind == 'degraded':
        strength, _ = fit_strength(gts, class_ids, spec['degrade'], spec['target_miou'], seed)
        draws = [Draws(seed, i, g.shape) for i, g in enumerate(gts)]
        return [degrade(g, spec['degrade'], strength, d) for g, d in zip(gts, draws)], \
            {'strength': round(float(strength), 4)}
    raise PSSLError(f'label source kind {kind!r} is not made from exact masks')


def write_mask_store(root, items, class_names, masks, settings):
    """A label store at ``root`` holding ``masks`` (confidence 1), through
    the store writer (atomic files, train.txt, synsets, manifest)."""
    by_rel = {it.rel: m for it, m in zip(items, masks)}
    writer = LabelStoreWriter(root, items, class_names, batch_size=64, settings=settings,
                              desc='labels')

    def label_chunk(chunk, start):
        for item in chunk:
            if not writer.has_label(item):
                mask = by_rel[item.rel].astype(np.uint8)
                yield Label(item, mask, np.ones(mask.shape, np.float16))

    writer.run(label_chunk, shard=(0, 1), progress=False)
    return writer.finalize(head={'made_from': settings}, foreground_share=True)


def build_store(root, spec, source, seed=0):
    """Write the store of label source ``spec`` for the benchmark's source
    set into ``root`` (emptied first) -> its facts (strength for degraded)."""
    from ..datasets.classification_set import list_source
    wanted = dict(spec, seed=seed)
    try:   # made before with the same settings (a resumed run): keep its files
        with open(os.path.join(root, 'manifest.json')) as f:
            made = json.load(f)['made_from']
        if {k: v for k, v in made.items() if k != 'strength'} == wanted:
            return {k: v for k, v in made.items() if k == 'strength'}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    items, names = list_source(source['image_root'], None, source['synsets'])
    gts = source_masks(source, items)
    masks, facts = make_masks(spec, gts, [it.class_id for it in items], seed)
    if os.path.isdir(root):
        shutil.rmtree(root)
    write_mask_store(root, items, names, masks, dict(wanted, **facts))
    return facts


def chance_quality(items, gt_root, seed=0):
    """{miou, fg_iou} of a random mask with each image's true foreground
    share, against the exact masks: the table's chance row."""
    rng = np.random.default_rng(seed)
    chance = IoUCounter()
    for item in items:
        gt = read_gt_mask(gt_path(gt_root, item.rel))
        chance.add(rng.uniform(size=gt.shape) < gt.mean(), gt, item.class_id)
    result = chance.result()
    return {'miou': result['miou'], 'fg_iou': result['fg_iou']}
