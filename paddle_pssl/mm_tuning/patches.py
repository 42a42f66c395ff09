"""Mix: sample labelled square patches from segmentation samples (M&M tuning).

Mix-and-Match tuning (Zhan et al., AAAI 2018; docs/methods.md section 4) turns a
segmentation set into a patch set: about 10 patches per image, side uniform in
[64, 256], 90 % centred on foreground pixels and 10 % on background, 5x
oversampled candidates thinned so that no kept patch is more than 60 % covered
by earlier ones, every patch resized to 128 and labelled with its centre
pixel's class. Patches from all images of a batch are mixed together.

Choices where the method is silent (all configurable):
- A patch stays centred on its sampled pixel even at the border; the part
  outside the image is filled with ``pad_value`` (as upstream's Caffe layer
  does), so the label really is the centre pixel's class.
- The foreground/background split per image is ``num_patches * fg_ratio``
  rounded stochastically (floor or ceil), so the expected ratio is exact for
  any ``num_patches``. An image without foreground (or background) pixels
  gives its whole quota to the other kind.
- Candidates of both kinds are shuffled together and accepted greedily while
  their kind's quota is open. When candidates run out, the image yields fewer
  patches rather than breaking the ratio or the overlap rule.
- Coverage is measured on the part of the candidate inside the image: the
  padding can never be covered, and counting it would let border patches
  duplicate content.
"""
import math

import cv2
import numpy as np

__all__ = [
    "PatchSampler",
    "select_boxes",
    "covered_fraction",
    "crop_patch",
    "sample_batch_patches",
]


def _as_rng(rng):
    # Accept a seed, a Generator or None, so callers can pass a config's seed.
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _box_in_image(box, image_shape):
    """Clip a (y0, x0, y1, x1) box to the image; None if nothing is inside."""
    h, w = image_shape[:2]
    y0, x0, y1, x1 = (int(v) for v in box)
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if y1 <= y0 or x1 <= x0:
        return None
    return y0, x0, y1, x1


def covered_fraction(coverage, box):
    """Fraction of the in-image part of ``box`` already set in ``coverage``.

    Args:
        coverage (np.ndarray): HxW bool, pixels covered by kept patches.
        box: (y0, x0, y1, x1), end-exclusive; may extend outside the image.
    """
    inside = _box_in_image(box, coverage.shape)
    if inside is None:
        return 1.0  # nothing of the image in it: useless, treat as covered
    y0, x0, y1, x1 = inside
    return float(coverage[y0:y1, x0:x1].mean())


def select_boxes(boxes, image_shape, max_overlap=0.6, kinds=None, quota=None):
    """Greedy overlap thinning, in the given order.

    A box is dropped when more than ``max_overlap`` of its in-image area is
    already covered by the union of the boxes kept before it.

    Args:
        boxes (array-like): [K, 4] (y0, x0, y1, x1), end-exclusive.
        image_shape: (H, W, ...).
        max_overlap (float): drop when covered fraction > this.
        kinds (array-like, optional): [K] small int group id per box
            (here 1 = foreground-centred, 0 = background-centred).
        quota (sequence, optional): quota[k] = most boxes of kind k to keep;
            needs ``kinds``. Without it every box competes only on overlap.

    Returns:
        np.ndarray: int64 indices of the kept boxes, in acceptance order.
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if quota is not None:
        if kinds is None:
            raise ValueError("select_boxes: quota needs kinds")
        kinds = np.asarray(kinds, dtype=np.int64)
        remaining = [int(q) for q in quota]
    coverage = np.zeros(image_shape[:2], dtype=bool)
    kept = []
    for i, box in enumerate(boxes):
        if quota is not None:
            if remaining[kinds[i]] <= 0:
                continue
        if covered_fraction(coverage, box) > max_overlap:
            continue
        y0, x0, y1, x1 = _box_in_image(box, image_shape)
        coverage[y0:y1, x0:x1] = True
        kept.append(i)
        if quota is not None:
            remaining[kinds[i]] -= 1
            if sum(remaining) <= 0:
                break
    return np.asarray(kept, dtype=np.int64)


def crop_patch(image, center, side, out_size, pad_value=0.0):
    """Square crop of ``side`` centred on ``center`` (y, x), resized to out_size.

    Out-of-image pixels are ``pad_value``. Returns HWC float32 [S, S, C].
    """
    h, w = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    cy, cx = int(center[0]), int(center[1])
    y0, x0 = cy - side // 2, cx - side // 2
    crop = np.full((side, side, channels), pad_value, dtype=np.float32)
    iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y0 + side, h), min(x0 + side, w)
    crop[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1].reshape(
        iy1 - iy0, ix1 - ix0, channels)
    if side != out_size:
        # AREA when shrinking avoids aliasing; LINEAR when enlarging.
        interp = cv2.INTER_AREA if side > out_size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (out_size, out_size), interpolation=interp)
        if crop.ndim == 2:
            crop = crop[:, :, None]
    return crop


class PatchSampler(object):
    """Mix step of M&M tuning for one image; see the module docstring.

    Args:
        num_patches (int): patches wanted per image (10).
        min_size, max_size (int): side range in pixels, uniform, inclusive;
            clipped to the image's shorter side.
        out_size (int): side after resizing (128).
        fg_ratio (float): share of patches centred on foreground pixels (0.9).
        background_ids (sequence of int): label ids that count as background.
        ignore_index (int): label id never used as a centre (255).
        oversample (int): candidates drawn per wanted patch (5).
        max_overlap (float): drop a candidate more than this covered (0.6).
        pad_value (float): fill for the part of a patch outside the image.
    """

    def __init__(self,
                 num_patches=10,
                 min_size=64,
                 max_size=256,
                 out_size=128,
                 fg_ratio=0.9,
                 background_ids=(0, ),
                 ignore_index=255,
                 oversample=5,
                 max_overlap=0.6,
                 pad_value=0.0):
        if not 1 <= min_size <= max_size:
            raise ValueError("PatchSampler: need 1 <= min_size <= max_size, got "
                             "{} and {}".format(min_size, max_size))
        if not 0.0 <= fg_ratio <= 1.0:
            raise ValueError("PatchSampler: fg_ratio must be in [0, 1], got "
                             "{}".format(fg_ratio))
        if oversample < 1 or num_patches < 0:
            raise ValueError("PatchSampler: need oversample >= 1 and "
                             "num_patches >= 0")
        self.num_patches = int(num_patches)
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.out_size = int(out_size)
        self.fg_ratio = float(fg_ratio)
        self.background_ids = tuple(int(b) for b in background_ids)
        self.ignore_index = ignore_index
        self.oversample = int(oversample)
        self.max_overlap = float(max_overlap)
        self.pad_value = float(pad_value)

    def _pools(self, label):
        valid = np.ones(label.shape, dtype=bool)
        if self.ignore_index is not None:
            valid &= label != self.ignore_index
        background = np.isin(label, self.background_ids) & valid
        foreground = valid & ~background
        return np.flatnonzero(foreground), np.flatnonzero(background)

    def _quota(self, n_fg_pixels, n_bg_pixels, rng):
        if n_fg_pixels == 0 and n_bg_pixels == 0:
            return 0, 0
        if n_bg_pixels == 0:
            return self.num_patches, 0
        if n_fg_pixels == 0:
            return 0, self.num_patches
        wanted = self.num_patches * self.fg_ratio
        n_fg = int(math.floor(wanted))
        if rng.random() < wanted - n_fg:
            n_fg += 1
        n_fg = min(n_fg, self.num_patches)
        return n_fg, self.num_patches - n_fg

    def sample_boxes(self, label, rng=None):
        """Choose patch centres and sides for one label map.

        Args:
            label (np.ndarray): HxW (or HxWx1) int label map.
            rng: np.random.Generator, seed or None.

        Returns:
            dict of arrays, one row per kept patch, in acceptance order:
            ``center`` [n, 2] int64 (y, x); ``side`` [n] int64;
            ``box`` [n, 4] int64 (y0, x0, y1, x1), may extend past the image;
            ``label`` [n] int64 centre-pixel class;
            ``foreground`` [n] bool (centre drawn from the foreground pool).
        """
        rng = _as_rng(rng)
        label = np.asarray(label)
        if label.ndim == 3 and label.shape[-1] == 1:
            label = label[..., 0]
        if label.ndim != 2:
            raise ValueError("PatchSampler: label must be HxW, got shape "
                             "{}".format(label.shape))
        h, w = label.shape
        fg_pool, bg_pool = self._pools(label)
        n_fg, n_bg = self._quota(fg_pool.size, bg_pool.size, rng)

        kinds = np.concatenate([
            np.ones(n_fg * self.oversample, dtype=np.int64),
            np.zeros(n_bg * self.oversample, dtype=np.int64)
        ])
        kinds = kinds[rng.permutation(kinds.size)]
        flat = np.empty(kinds.size, dtype=np.int64)
        is_fg = kinds == 1
        if is_fg.any():
            flat[is_fg] = fg_pool[rng.integers(0, fg_pool.size, is_fg.sum())]
        if (~is_fg).any():
            flat[~is_fg] = bg_pool[rng.integers(0, bg_pool.size, (~is_fg).sum())]
        cy, cx = np.divmod(flat, w)
        max_side = min(self.max_size, h, w)
        min_side = min(self.min_size, max_side)
        sides = rng.integers(min_side, max_side + 1, kinds.size)
        y0 = cy - sides // 2
        x0 = cx - sides // 2
        boxes = np.stack([y0, x0, y0 + sides, x0 + sides], axis=1)

        keep = select_boxes(boxes, (h, w), self.max_overlap, kinds=kinds,
                            quota=(n_bg, n_fg))
        cy, cx = cy[keep], cx[keep]
        return {
            "center": np.stack([cy, cx], axis=1).reshape(-1, 2).astype(np.int64),
            "side": sides[keep].astype(np.int64),
            "box": boxes[keep].reshape(-1, 4).astype(np.int64),
            "label": label[cy, cx].astype(np.int64),
            "foreground": is_fg[keep],
        }

    def crop(self, image, boxes):
        """Crop and resize the patches of ``sample_boxes`` from an HxWxC image.

        Returns float32 [n, C, out_size, out_size].
        """
        image = np.asarray(image)
        channels = image.shape[2] if image.ndim == 3 else 1
        out = np.empty((len(boxes["side"]), channels, self.out_size,
                        self.out_size), dtype=np.float32)
        for k, (center, side) in enumerate(zip(boxes["center"], boxes["side"])):
            patch = crop_patch(image, center, int(side), self.out_size,
                               self.pad_value)
            out[k] = patch.transpose(2, 0, 1)
        return out

    def __call__(self, image, label, rng=None):
        """Patches of one image: (patches [n,C,S,S] float32, labels [n] int64)."""
        image = np.asarray(image)
        label = np.asarray(label)
        if image.shape[:2] != label.shape[:2]:
            raise ValueError("PatchSampler: image {} and label {} sizes differ".format(
                image.shape, label.shape))
        boxes = self.sample_boxes(label, rng)
        return self.crop(image, boxes), boxes["label"]


def sample_batch_patches(images,
                         labels,
                         sampler=None,
                         rng=None,
                         shuffle=True,
                         channels_first=False):
    """Mix: sample patches from every image of a batch and mix them together.

    Args:
        images: [B, H, W, C] array or a list of HxWxC arrays (sizes may differ);
            with ``channels_first`` [B, C, H, W] / CxHxW instead.
        labels: [B, H, W] array (a [B, 1, H, W] one is squeezed) or a list.
        sampler (PatchSampler, optional): defaults to ``PatchSampler()``.
        rng: np.random.Generator, seed or None; one stream for the batch.
        shuffle (bool): mix patches of different images in random order.

    Returns:
        patches float32 [P, C, S, S], labels int64 [P], source image index
        int64 [P] (position of the image in the batch).
    """
    sampler = sampler if sampler is not None else PatchSampler()
    rng = _as_rng(rng)
    if len(images) != len(labels):
        raise ValueError("sample_batch_patches: {} images but {} labels".format(
            len(images), len(labels)))
    all_patches, all_labels, all_sources = [], [], []
    for index, (image, label) in enumerate(zip(images, labels)):
        image = np.asarray(image)
        label = np.asarray(label)
        if channels_first:
            image = np.moveaxis(image, 0, -1)
        if label.ndim == 3 and label.shape[0] == 1:
            label = label[0]
        patches, patch_labels = sampler(image, label, rng)
        all_patches.append(patches)
        all_labels.append(patch_labels)
        all_sources.append(np.full(patch_labels.shape, index, dtype=np.int64))
    channels = all_patches[0].shape[1] if all_patches else 3
    if not all_patches or sum(len(p) for p in all_patches) == 0:
        empty = np.zeros((0, channels, sampler.out_size, sampler.out_size),
                         dtype=np.float32)
        return empty, np.zeros(0, np.int64), np.zeros(0, np.int64)
    patches = np.concatenate(all_patches, axis=0)
    patch_labels = np.concatenate(all_labels, axis=0)
    sources = np.concatenate(all_sources, axis=0)
    if shuffle:
        order = rng.permutation(len(patch_labels))
        patches, patch_labels, sources = patches[order], patch_labels[order], sources[order]
    return patches, patch_labels, sources
