"""LIME for images, batched, on InterpretDL 0.8.0's pieces.

Reused from InterpretDL: the superpixels (``_lime_base.compute_segments``:
quickshift, sigma 1, on the uint8 RGB image), the random on/off design drawn
from ``LimeBase.random_state`` (``randint(0, 2, num_samples * n_superpixels)``,
first row all on), the cosine distances, the kernel and the weighted linear fit
(``LimeBase._fitting_data``: ``Ridge(alpha=0, normalize=True)``, written out
in :mod:`.lime_ridge` where scikit-learn >= 1.2 dropped it). Replaced: InterpretDL's per-sample Python loop that builds
perturbed images and classifies them image by image. Here all perturbed copies
of all images of the batch are built with one gather each and classified in
chunks of ``batch_size`` rows; superpixels are computed once per image, in a
thread pool (scikit-image's quickshift releases the GIL), possibly while the
other explainers run (:meth:`LIMEExplainer.prepare_async`).

Like InterpretDL, the image is first restored to uint8 (the perturbed copies
are built from it, switched-off superpixels get their mean colour, truncated
to uint8), then normalised again, but with the classifier's mean/std (0..1
units) instead of InterpretDL's hard-wired ImageNet statistics.

Normalisation (default ``'relu_max'``): each superpixel painted with its
weight, negative weights set to 0, division by the max. Options: ``'abs_max'``,
``'minmax'``, ``'percentile'``, ``None`` (the painted weights).
"""
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .base import Explainer, chunks, image_rngs, import_interpretdl


def restore_uint8(images, mean, std):
    """Float NCHW model input -> uint8 NHWC RGB, step by step as InterpretDL 0.8.0's
    ``restore_image`` (float32 in-place arithmetic), with the given mean/std.
    Out-of-range values are clipped (InterpretDL would wrap around)."""
    mean64 = np.asarray(mean, np.float64).reshape(1, -1, 1, 1)
    std64 = np.asarray(std, np.float64).reshape(1, -1, 1, 1)
    x = (images.astype(np.float64) * std64).astype(np.float32)
    x = (x.astype(np.float64) + mean64).astype(np.float32)
    x = x * np.float32(255)
    x = x + np.float32(0.5)
    return np.clip(x, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def normalisation_lut(mean, std):
    """[C, 256] float32: uint8 value -> model input, with InterpretDL 0.8.0's
    ``preprocess_image`` arithmetic, so perturbed copies match it bit for bit."""
    values = np.arange(256, dtype=np.float32) / np.float32(255)
    mean64 = np.asarray(mean, np.float64).reshape(-1, 1)
    std64 = np.asarray(std, np.float64).reshape(-1, 1)
    lut = (values[None].astype(np.float64) - mean64).astype(np.float32)
    return (lut.astype(np.float64) / std64).astype(np.float32)


def apply_lut(lut, image_u8):
    """uint8 [H, W, C] -> float32 [C, H, W]."""
    return np.stack([lut[c][image_u8[..., c]] for c in range(image_u8.shape[-1])])


def mean_colour_image(image_u8, segments):
    """Every superpixel filled with its mean colour, truncated to uint8 (as
    InterpretDL's ``hide_color=None``)."""
    n = segments.max() + 1
    flat = segments.ravel()
    counts = np.bincount(flat, minlength=n).astype(np.float64)
    out = np.empty_like(image_u8)
    for c in range(image_u8.shape[-1]):
        sums = np.bincount(flat, weights=image_u8[..., c].ravel().astype(np.float64), minlength=n)
        means = sums / np.where(counts > 0, counts, 1)
        out[..., c] = means.astype(np.uint8)[segments]
    return out


class LIMEExplainer(Explainer):
    """LIME (Ribeiro et al. 2016) with InterpretDL 0.8.0's settings.

    Args:
        num_samples: perturbed copies per image (InterpretDL default 1000; the
            cost is one forward per copy).
        batch_size: rows per forward (any mix of images).
        seed: seeds the RandomState the on/off design is drawn from, consumed
            image after image -- the same stream as one InterpretDL
            ``LIMECVInterpreter(random_seed=seed)`` used on the images in order.
        kernel_width: LIME's kernel width on cosine distances (0.25).
        n_jobs: threads for the superpixels (default: number of CPUs).
        segment_fn: optional ``uint8 HWC image -> int labels 0..K-1``; default
            InterpretDL's quickshift.
    """

    name = "lime"
    default_normalize = "relu_max"

    def __init__(self, classifier, num_samples=1000, batch_size=50, seed=None, kernel_width=0.25, n_jobs=None,
                 segment_fn=None, **kwargs):
        super().__init__(classifier, **kwargs)
        import_interpretdl()
        from interpretdl.interpreter._lime_base import LimeBase, compute_segments

        self.num_samples = int(num_samples)
        if self.num_samples < 2:
            raise ValueError("LIME needs num_samples >= 2")
        self.batch_size = int(batch_size)
        self.n_jobs = n_jobs or os.cpu_count() or 1
        self.segment_fn = segment_fn or compute_segments
        self._lime_base = LimeBase(kernel_width=kernel_width, random_state=seed)
        self._lut = normalisation_lut(classifier.mean, classifier.std)
        self.last_segments = None  # superpixels of the last batch, for inspection
        self.last_scores = None  # the linear model's weighted R^2 per image

    def reseed(self, seed):
        self._lime_base.random_state = np.random.RandomState(seed)

    # -- preparation: superpixels and the two images every perturbed row mixes --
    def _prepare_one(self, image_u8):
        segments = np.asarray(self.segment_fn(image_u8))
        kept = apply_lut(self._lut, image_u8)
        hidden = apply_lut(self._lut, mean_colour_image(image_u8, segments))
        return segments, kept, hidden

    def prepare(self, images):
        """Per image (segments [H, W], quantised input [C, H, W], mean-colour input)."""
        images_u8 = restore_uint8(np.asarray(images, np.float32), self.classifier.mean,
                                  self.classifier.std)
        if self.n_jobs > 1 and len(images_u8) > 1:
            with ThreadPoolExecutor(min(self.n_jobs, len(images_u8))) as pool:
                return list(pool.map(self._prepare_one, images_u8))
        return [self._prepare_one(img) for img in images_u8]

    def prepare_async(self, images):
        """Start :meth:`prepare` in a background thread; pass ``prepared=future``
        to the call."""
        pool = ThreadPoolExecutor(1)
        future = pool.submit(self.prepare, np.array(images, np.float32, copy=True))
        pool.shutdown(wait=False)
        return future

    # -- the explanation ------------------------------------------------------
    def raw(self, images, targets, shared=None, seeds=None, prepared=None):
        if prepared is None:
            prepared = self.prepare(images)
        elif hasattr(prepared, "result"):
            prepared = prepared.result()
        n = len(images)
        rngs = image_rngs(self._lime_base.random_state, seeds, n)

        designs = []
        for i, (segments, _, _) in enumerate(prepared):
            n_features = int(segments.max()) + 1
            design = rngs[i].randint(0, 2, self.num_samples * n_features).reshape((self.num_samples, n_features))
            design[0, :] = 1
            designs.append(design)

        # row 0 is the unperturbed (quantised) image: reuse the shared forward
        # when it saw the same input
        reuse_first = [shared is not None and np.abs(prepared[i][1] - images[i]).max() <= 1e-5
                       for i in range(n)]
        rows = [(i, r) for i in range(n) for r in range(self.num_samples) if r > 0 or not reuse_first[i]]
        scores = np.zeros((n, self.num_samples), np.float32)
        for i in range(n):
            if reuse_first[i]:
                scores[i, 0] = shared.probabilities[i, targets[i]]

        for start, stop in chunks(len(rows), self.batch_size):
            batch = []
            for i, r in rows[start:stop]:
                segments, kept, hidden = prepared[i]
                keep = designs[i][r][segments].astype(bool)
                batch.append(np.where(keep[None], kept, hidden))
            probs = self.runner.probabilities(np.stack(batch))
            for k, (i, r) in enumerate(rows[start:stop]):
                scores[i, r] = probs[k, targets[i]]

        from sklearn.metrics import pairwise_distances

        maps = np.zeros((n,) + images.shape[2:], np.float32)
        self.last_scores = np.zeros(n)
        for i in range(n):
            segments, design = prepared[i][0], designs[i]
            distances = pairwise_distances(design, design[0].reshape(1, -1), metric="cosine").ravel()
            with warnings.catch_warnings():
                # scikit-learn 1.1 warns on every Ridge(normalize=True) InterpretDL builds
                warnings.simplefilter("ignore", FutureWarning)
                _, feature_weights, r2, _ = self._lime_base._fitting_data(
                    design, scores[i][:, None], distances, 0)
            weights = np.zeros(design.shape[1], np.float32)
            for feature, weight in feature_weights:
                weights[feature] = weight
            maps[i] = weights[segments]
            self.last_scores[i] = r2
        self.last_segments = [p[0] for p in prepared]
        return maps
