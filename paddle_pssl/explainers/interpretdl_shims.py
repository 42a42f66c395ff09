"""Small, named fixes for InterpretDL 0.8.0 (the newest release) on Paddle 2.6,
and the one-image-at-a-time InterpretDL reference the batched explainers are
tested and benchmarked against.

Defects worked around here (all seen with paddlepaddle 2.6.2):

* ``import interpretdl`` after paddle crashes unless Python's zlib was loaded
  first (libpaddle.so exports its own zlib symbols), and 0.8.0's package
  ``__init__`` prints a misleading "Paddle should be installed" line because
  its GLIME/NormLIME/ForgettingEvents modules import the removed
  ``paddle.fluid`` -> :func:`base.import_interpretdl`.
* ``GradCAMInterpreter`` reads ``.grad`` of a hooked intermediate tensor, which
  Paddle >= 2.4 leaves ``None`` (``np.mean(None)`` then raises); it also puts
  the model in train mode, flips batch-norm layers to global statistics and
  dropout to p=0 for good, and leaves its forward hook on the layer ->
  :class:`GradCAMInterpreterFixed` (upstream's unreleased fix also switched to
  ``paddle.grad``).
* ``LIMECVInterpreter`` keeps the superpixels of the first image it saw and
  reuses them for every later image (``LimeBase.segments`` is only computed
  while ``None``) -> :class:`LIMECVInterpreterFixed`.
* ``IntGradCVInterpreter`` builds its path points as ``data * alpha`` with a
  float64 ``alpha`` from ``np.linspace``: float32 under numpy 1, float64 under
  numpy 2's promotion rules (NEP 50, Python 3.13 here), and Paddle's conv then
  refuses the input -> :class:`IntGradCVInterpreterFixed`.
* LIME's fit calls ``Ridge(normalize=True)``, removed in scikit-learn 1.2 (the
  only choice on Python 3.12+) -> :mod:`.lime_ridge`, installed by
  :func:`base.import_interpretdl` where scikit-learn >= 1.2.
"""
import warnings

import numpy as np

from .base import import_interpretdl

import_interpretdl()
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402
from interpretdl.interpreter.gradient_cam import GradCAMInterpreter  # noqa: E402
from interpretdl.interpreter.integrated_gradients import IntGradCVInterpreter  # noqa: E402
from interpretdl.interpreter.lime import LIMECVInterpreter  # noqa: E402


class GradCAMInterpreterFixed(GradCAMInterpreter):
    """InterpretDL 0.8.0's ``GradCAMInterpreter`` with a working ``predict_fn``.

    Same ``interpret(...)`` and the same formula (0.8.0's own code runs it); the
    prepare step keeps the model in eval mode, hooks the target layer only for
    the duration of one forward, and takes d target / d feature map with
    ``paddle.grad``. ``gradient_of``: ``'probability'`` (0.8.0's choice) or ``'logit'``.
    """

    def __init__(self, model, device=None, gradient_of="probability"):
        super().__init__(model, device or paddle.get_device())
        self.gradient_of = gradient_of

    def _paddle_prepare(self, predict_fn=None):
        if predict_fn is not None:
            return super()._paddle_prepare(predict_fn)
        paddle.set_device(self.device)
        self.model.eval()  # gradients flow in eval mode too; 0.8.0's train() mutated the model
        layer = dict(self.model.named_sublayers())[self._target_layer_name]

        def predict_fn(data, label):
            captured = []
            handle = layer.register_forward_post_hook(lambda lyr, inp, out: captured.append(out))
            try:
                x = paddle.to_tensor(data)
                x.stop_gradient = False  # a graph even if the parameters are frozen
                logits = self.model(x)
            finally:
                handle.remove()
            probas = F.softmax(logits, axis=1)
            if label is None:
                label = paddle.argmax(probas, axis=1).numpy()
            onehot = F.one_hot(paddle.to_tensor(np.asarray(label).reshape(-1)), num_classes=logits.shape[1])
            out = logits if self.gradient_of == "logit" else probas
            (grads,) = paddle.grad([paddle.sum(out * onehot)], [captured[0]])
            return captured[0], grads.numpy(), label

        self.predict_fn = predict_fn
        self.paddle_prepared = True


class LIMECVInterpreterFixed(LIMECVInterpreter):
    """InterpretDL 0.8.0's ``LIMECVInterpreter`` that recomputes the superpixels
    for every image (0.8.0 reuses the first image's) and mutes scikit-learn
    1.1's per-fit ``normalize`` FutureWarning (on scikit-learn >= 1.2 its fit is
    :mod:`.lime_ridge`'s)."""

    def __init__(self, model, device=None, random_seed=None):
        super().__init__(model, device or paddle.get_device(), random_seed)

    def interpret(self, *args, **kwargs):
        self.lime_base.segments = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return super().interpret(*args, **kwargs)


class IntGradCVInterpreterFixed(IntGradCVInterpreter):
    """InterpretDL 0.8.0's ``IntGradCVInterpreter`` whose model inputs keep the
    images' dtype under numpy 2 too (its ``data * alpha`` is float64 there)."""

    def _build_predict_fn(self, *args, **kwargs):
        super()._build_predict_fn(*args, **kwargs)
        inner = self.predict_fn
        if getattr(inner, "keeps_dtype", False):
            return

        def predict_fn(inputs, *args, **kwargs):
            return inner(np.asarray(inputs, dtype=self.data_type), *args, **kwargs)

        predict_fn.keeps_dtype = True
        self.predict_fn = predict_fn


# ----------------------------------------------------------------------------
# InterpretDL, one image at a time, with the settings of one of our explainers
# ----------------------------------------------------------------------------
def interpretdl_reference(explainer, images, targets, seed=None, raw=False, timing_only=False):
    """Maps for `images` computed by InterpretDL 0.8.0's own interpreters (with
    the shims above), one image per call, with `explainer`'s settings and
    normalisation. Returns float32 [N, H, W] (raw, before normalisation, if
    ``raw``). The baseline of the tests and of ``benchmarks/bench_explainers.py``.

    * cam: InterpretDL has no CAM interpreter; ``explainer`` is called per image.
    * gradcam: :class:`GradCAMInterpreterFixed`.
    * smoothgrad: ``SmoothGradInterpreter`` after ``np.random.seed(seed)`` (the
      global numpy state is restored afterwards).
    * intgrad: :class:`IntGradCVInterpreterFixed` (zero baseline).
    * lime: one :class:`LIMECVInterpreterFixed` ``(random_seed=seed)`` over the
      images in order. 0.8.0 hard-wires ImageNet mean/std, so the classifier must too
      (``timing_only=True`` runs it anyway, for its cost: the maps are then not comparable).
    """
    from .base import as_batch, normalize_maps, reduce_channels, upsample
    from .cam import CAMExplainer, GradCAMExplainer
    from .lime import LIMEExplainer
    from .smoothgrad import IntegratedGradientsExplainer, SmoothGradExplainer

    images, targets = as_batch(images, targets)
    classifier = explainer.classifier
    model = classifier.model
    maps = []
    if isinstance(explainer, CAMExplainer):
        maps = [explainer.raw(images[i:i + 1], targets[i:i + 1])[0] for i in range(len(images))]
    elif isinstance(explainer, GradCAMExplainer):
        interp = GradCAMInterpreterFixed(model, gradient_of=explainer.gradient_of)
        for i in range(len(images)):
            cam = interp.interpret(images[i:i + 1], classifier.feature_layer_name, label=[int(targets[i])],
                                   visual=False)
            maps.append(upsample(cam, images.shape[2:])[0])
    elif isinstance(explainer, (SmoothGradExplainer, IntegratedGradientsExplainer)):
        from interpretdl import SmoothGradInterpreter

        saved_state = np.random.get_state()
        try:
            if isinstance(explainer, SmoothGradExplainer):
                np.random.seed(seed)
                interp = SmoothGradInterpreter(model, device=paddle.get_device())
                run = lambda x, t: interp.interpret(  # noqa: E731
                    x, labels=[t], noise_amount=explainer.noise_amount, n_samples=explainer.n_samples,
                    gradient_of=explainer.gradient_of, visual=False)
            else:
                if np.any(np.asarray(explainer.baseline) != 0):
                    raise ValueError("the InterpretDL reference of intgrad supports the zero baseline only")
                interp = IntGradCVInterpreterFixed(model, device=paddle.get_device())
                run = lambda x, t: interp.interpret(  # noqa: E731
                    x, labels=[t], steps=explainer.steps, gradient_of=explainer.gradient_of, visual=False)
            for i in range(len(images)):
                grads = run(images[i:i + 1], int(targets[i]))
                maps.append(reduce_channels(grads, explainer.channel_reduce)[0])
        finally:
            np.random.set_state(saved_state)
            model.clear_gradients()  # 0.8.0 leaves every parameter's .grad behind
    elif isinstance(explainer, LIMEExplainer):
        from ..classifiers import IMAGENET_MEAN, IMAGENET_STD

        if not timing_only and not (np.allclose(classifier.mean, IMAGENET_MEAN)
                                    and np.allclose(classifier.std, IMAGENET_STD)):
            raise ValueError("InterpretDL 0.8.0's LIME assumes ImageNet mean/std; the classifier uses others")
        interp = LIMECVInterpreterFixed(model, random_seed=seed)
        for i in range(len(images)):
            t = int(targets[i])
            weights = interp.interpret(images[i:i + 1], interpret_class=t, num_samples=explainer.num_samples,
                                       batch_size=explainer.batch_size, visual=False)
            segments = interp.lime_results["segmentation"]
            painted = np.zeros(segments.max() + 1, np.float32)
            for feature, weight in weights[t]:
                painted[feature] = weight
            maps.append(painted[segments])
    else:
        raise TypeError(f"no InterpretDL reference for {type(explainer).__name__}")
    maps = np.stack(maps).astype(np.float32)
    return maps if raw else normalize_maps(maps, explainer.normalize, explainer.percentile)
