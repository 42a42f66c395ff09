"""Input-gradient explainers, batched: SmoothGrad and Integrated Gradients.

InterpretDL 0.8.0 loops over noisy copies (or interpolation steps) one
forward/backward each, with every parameter's gradient computed and kept.
Here the copies of all images are stacked and pushed through in chunks of
``batch_size`` rows, with the parameters frozen (input gradients only).

SmoothGrad keeps InterpretDL's definitions so the maps agree in expectation
(and exactly, for the same random stream): noise std =
``noise_amount * (max(x) - min(x))`` per image over all its channels and
pixels, Gaussian noise drawn with numpy's legacy RandomState, gradient of the
target's softmax probability (``gradient_of='probability'``) by default.

Normalisation: ``channel_reduce`` (default ``'abs_sum'``: absolute value summed
over the colour channels, InterpretDL's own visualisation), then
``normalize`` (default ``'percentile'``: divide by the map's 99th percentile,
clip at 1). Options: ``'relu_max'``, ``'minmax'``, ``'abs_max'``, ``None``.
"""
import numpy as np

from .base import Explainer, chunks, image_rngs, reduce_channels


class _InputGradientExplainer(Explainer):
    default_normalize = "percentile"

    def __init__(self, classifier, gradient_of="probability", channel_reduce="abs_sum", batch_size=32, **kwargs):
        super().__init__(classifier, **kwargs)
        if gradient_of not in ("logit", "probability"):
            raise ValueError(f"gradient_of must be 'logit' or 'probability', got {gradient_of!r}")
        reduce_channels(np.zeros((1, 1, 1, 1), np.float32), channel_reduce)  # validates the name
        self.gradient_of = gradient_of
        self.channel_reduce = channel_reduce
        self.batch_size = int(batch_size)

    def _mean_gradients(self, images, targets, rows_per_image, make_rows):
        """Average input gradient over `rows_per_image` rows of every image.

        make_rows(i, start, stop) returns the rows start..stop-1 of image i; it
        is called in increasing order per image (random streams stay in order).
        """
        n = len(images)
        # walk all (image, row) pairs in order, cut into chunks of batch_size rows
        pieces = []  # (image index, start, stop) within one chunk
        for start, stop in chunks(n * rows_per_image, self.batch_size):
            chunk = []
            pos = start
            while pos < stop:
                i, r = divmod(pos, rows_per_image)
                r_stop = min(rows_per_image, r + (stop - pos))
                chunk.append((i, r, r_stop))
                pos += r_stop - r
            pieces.append(chunk)

        total = np.zeros_like(images)
        for chunk in pieces:
            batch = np.concatenate([make_rows(i, r0, r1) for i, r0, r1 in chunk])
            row_targets = np.concatenate([np.full(r1 - r0, targets[i]) for i, r0, r1 in chunk])
            grads = self.runner.input_gradients(batch, row_targets, self.gradient_of)
            pos = 0
            for i, r0, r1 in chunk:
                total[i] += grads[pos:pos + r1 - r0].sum(0)
                pos += r1 - r0
        return total / rows_per_image

    def attributions(self, images, targets, seeds=None):
        """[N, C, H, W] attributions before the channel reduction."""
        raise NotImplementedError

    def raw(self, images, targets, shared=None, seeds=None):
        return reduce_channels(self.attributions(images, targets, seeds=seeds), self.channel_reduce)


class SmoothGradExplainer(_InputGradientExplainer):
    """SmoothGrad (Smilkov et al. 2017) on InterpretDL's noise definition.

    Args:
        n_samples: noisy copies per image (InterpretDL default 50).
        noise_amount: noise std relative to the image's value range (0.1).
        seed: seeds the explainer's own RandomState, consumed image after image
            (the same stream as ``np.random.seed(seed)`` followed by
            InterpretDL's SmoothGradInterpreter on one image at a time).
        batch_size: rows (noisy copies, any mix of images) per forward/backward.
    """

    name = "smoothgrad"

    def __init__(self, classifier, n_samples=50, noise_amount=0.1, seed=None, **kwargs):
        super().__init__(classifier, **kwargs)
        self.n_samples = int(n_samples)
        self.noise_amount = noise_amount
        self.reseed(seed)

    def reseed(self, seed):
        self._rng = np.random.RandomState(seed)

    def attributions(self, images, targets, seeds=None):
        images, targets = np.asarray(images, np.float32), np.asarray(targets)
        rngs = image_rngs(self._rng, seeds, len(images))
        axes = tuple(range(1, images.ndim))
        # float32 arithmetic as InterpretDL 0.8.0 (same stds, same draws)
        stds = self.noise_amount * (np.max(images, axis=axes) - np.min(images, axis=axes))
        shape = images.shape[1:]

        def make_rows(i, start, stop):
            noise = rngs[i].normal(0.0, stds[i], (stop - start,) + shape).astype(np.float32)
            return images[i:i + 1] + noise

        return self._mean_gradients(images, targets, self.n_samples, make_rows)


class IntegratedGradientsExplainer(_InputGradientExplainer):
    """Integrated Gradients (Sundararajan et al. 2017), InterpretDL's Riemann sum:
    ``(x - b) * mean_j grad(b + alpha_j (x - b))``, ``alpha = linspace(0, 1, steps)``.

    baseline: ``0.0`` (default; in normalised space, i.e. the dataset-mean colour
    for mean/std-normalised inputs) or any array broadcastable to one image.
    """

    name = "intgrad"

    def __init__(self, classifier, steps=50, baseline=0.0, **kwargs):
        super().__init__(classifier, **kwargs)
        self.steps = int(steps)
        self.baseline = baseline

    def attributions(self, images, targets, seeds=None):
        images = np.asarray(images, np.float32)
        baseline = np.broadcast_to(np.asarray(self.baseline, np.float32), images.shape[1:])
        alphas = np.linspace(0, 1, self.steps)

        def make_rows(i, start, stop):
            return np.stack([images[i] * a + baseline * (1 - a) for a in alphas[start:stop]]).astype(np.float32)

        mean_grads = self._mean_gradients(images, targets, self.steps, make_rows)
        return mean_grads * (images - baseline[None])
