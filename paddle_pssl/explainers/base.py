"""The shared model runner (dygraph or Paddle Inference) and the explainer base class.

Every explainer is built once from a :class:`~paddle_pssl.classifiers.Classifier`
(the project's one description of a classifier: model, feature layer, fc layer,
mean/std in 0..1 units) and called on a whole batch::

    maps = explainer(images, target_classes)   # np.float32 [N, H, W] in [0, 1]

``images`` is a float32 NCHW batch with the classifier's own normalisation
already applied, ``target_classes`` the dataset's class ids (not predictions).
The map normalisations are in :mod:`.maps` (re-exported here).
"""
import contextlib
import io
import os
import sys
import warnings
from typing import Optional

import numpy as np

import paddle
import paddle.nn.functional as F

from ..classifiers.capture import features_and_logits
from ..classifiers.registry import Classifier
from .maps import (NORMALIZERS, abs_max, minmax, normalize_maps, percentile_clip, reduce_channels,  # noqa: F401
                   relu_max, upsample)


def import_interpretdl():
    """Import interpretdl (the package's ``__init__`` loaded zlib first, see
    ``paddle_pssl/_zlib_first.py``) with its import-time
    print muted: 0.8.0's GLIME/NormLIME/ForgettingEvents modules import the
    removed ``paddle.fluid`` and the package then prints a misleading
    "Paddle should be installed" line. Where scikit-learn >= 1.2, LIME's
    ``Ridge(normalize=True)`` is then written out (``lime_ridge.install``)."""
    if "interpretdl" not in sys.modules:
        with contextlib.redirect_stdout(io.StringIO()):
            import interpretdl  # noqa: F401
        from .lime_ridge import install

        install()
    return sys.modules["interpretdl"]


def as_batch(images, targets):
    """Validate and convert (images, targets) to (float32 NCHW ndarray, int64 [N])."""
    if isinstance(images, paddle.Tensor):
        images = images.numpy()
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a float NCHW batch, got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be preprocessed floats (the classifier's normalisation applied), "
                         f"got dtype {images.dtype}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} target classes")
    if len(targets) and targets.min() < 0:
        raise ValueError(f"target classes must be class ids >= 0, got {targets.min()}")
    return images, targets


# ----------------------------------------------------------------------------
# the model runner: the passes every explainer shares
# ----------------------------------------------------------------------------
@contextlib.contextmanager
def frozen_parameters(model):
    """Parameters stop gradient for the duration: input or feature gradients then
    skip every weight-gradient kernel (about half of a backward pass), and no
    ``.grad`` accumulates on the model (InterpretDL 0.8.0 leaves it there)."""
    params = list(model.parameters())
    saved = [p.stop_gradient for p in params]
    try:
        for p in params:
            p.stop_gradient = True
        yield
    finally:
        for p, s in zip(params, saved):
            p.stop_gradient = s


def class_score(logits, targets, gradient_of):
    """Sum over the batch of each row's target score (rows are independent in eval mode)."""
    onehot = F.one_hot(paddle.to_tensor(targets), num_classes=logits.shape[1])
    if gradient_of == "logit":
        return paddle.sum(logits * onehot)
    if gradient_of == "probability":
        return paddle.sum(F.softmax(logits, axis=1) * onehot)
    raise ValueError(f"gradient_of must be 'logit' or 'probability', got {gradient_of!r}")


class FeaturePass:
    """One forward of a clean batch: the last feature map (a leaf that requires
    grad, so the head's graph alone is recorded) and the logits."""

    def __init__(self, features, logits):
        self.features = features
        self.logits = logits
        self._probabilities = None

    @property
    def probabilities(self):
        if self._probabilities is None:
            with paddle.no_grad():
                self._probabilities = F.softmax(self.logits, axis=1).numpy()
        return self._probabilities

    def feature_gradients(self, targets, gradient_of):
        """d score / d features, [N, C, h, w] numpy."""
        score = class_score(self.logits, targets, gradient_of)
        (grad,) = paddle.grad([score], [self.features], retain_graph=True)
        return grad.numpy()


class InferenceForward:
    """Forward-only passes through Paddle Inference (oneDNN on CPU, the GPU
    predictor on GPU).

    Paddle 2.6's dygraph mode runs convolutions with its generic CPU kernels
    (``FLAGS_use_mkldnn`` has no effect there); Paddle Inference with oneDNN
    ran EfficientNet-Lite0 at 224x224 about 6x faster on this project's CPU
    (about 10x on Paddle 3.3), logits within ~1e-5 relative. Gradients stay in
    dygraph (Paddle 2.6's static executor and predictor could not run the
    gradient program: segfaults in batch_norm_grad). The model is exported
    once per input size, from a deep copy (``to_static`` would otherwise
    convert the caller's layer in place), to a temporary directory; the
    weights are a snapshot: call :meth:`ModelRunner.refresh` after changing them.
    """

    def __init__(self, model, input_shape, cpu_threads=1):
        import copy
        import os
        import tempfile

        from paddle import inference
        from paddle.static import InputSpec

        from ..deploy.paddle_compat import program_file, set_onednn

        self._tmp = tempfile.TemporaryDirectory(prefix="pssl_explainer_")
        prefix = os.path.join(self._tmp.name, "model")
        clone = copy.deepcopy(model)
        clone.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # to_static's input_spec notice
            # fixed C, H, W: models that compute padding from the input size
            # (TensorFlow-style 'SAME') need them at export time
            static = paddle.jit.to_static(clone, input_spec=[InputSpec([None] + list(input_shape), "float32", "x")],
                                          full_graph=True)
            paddle.jit.save(static, prefix)
        model_file = program_file(prefix)  # .json on Paddle 3
        config = inference.Config(model_file, prefix + ".pdiparams")
        device = paddle.get_device()
        if device.startswith("gpu"):
            config.enable_use_gpu(256, int(device.split(":")[1]) if ":" in device else 0)
        else:
            config.disable_gpu()
            set_onednn(config, model_file, True)  # Paddle 3.3: not for interpolating models
            config.set_cpu_math_library_num_threads(int(cpu_threads))
        config.disable_glog_info()
        self._predictor = inference.create_predictor(config)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])

    def logits(self, images):
        images = np.ascontiguousarray(images, np.float32)
        self._input.reshape(list(images.shape))
        self._input.copy_from_cpu(images)
        self._predictor.run()
        return self._output.copy_to_cpu()


ENGINES = ("dygraph", "inference")


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class ModelRunner:
    """Runs the classifier for the explainers (device = paddle's current one).

    engine: ``'dygraph'`` runs every pass on the Layer itself; ``'inference'``
    sends the forward-only passes (LIME's copies, Score-CAM's and occlusion's
    masked copies) through :class:`InferenceForward`, gradients stay in
    dygraph. When Paddle Inference cannot be built for the model, the runner
    prints one warning line and falls back to dygraph for good.
    cpu_threads: math threads of the inference engine (default: the
    environment's OMP_NUM_THREADS, else 1, as dygraph's kernels use).
    """

    def __init__(self, classifier: Classifier, engine="dygraph", cpu_threads=None):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.classifier = classifier
        self.engine = engine
        self.cpu_threads = cpu_threads or int(os.environ.get("OMP_NUM_THREADS") or 1)
        self._inference = {}  # input shape (C, H, W) -> InferenceForward
        self._warned_train = False

    def refresh(self):
        """Drop the exported inference engines (after the model's weights changed)."""
        self._inference = {}

    def _ensure_eval(self):
        model = self.classifier.model
        if model.training:
            if not self._warned_train:
                warnings.warn("explainers: the classifier was in train mode; switched to eval mode "
                              "(batch-norm statistics and dropout would make maps batch-dependent)",
                              stacklevel=3)
                self._warned_train = True
            model.eval()

    def feature_pass(self, images) -> FeaturePass:
        """Forward the batch once; the backbone runs without a graph (parameters
        frozen, the feature map a fresh leaf: :mod:`paddle_pssl.classifiers.capture`)."""
        clf = self.classifier
        self._ensure_eval()
        with frozen_parameters(clf.model):
            features, logits = features_and_logits(clf.model, clf.feature_layer, images, leaf=True)
        return FeaturePass(features, logits)

    def forward_engine(self, shape):
        """The :class:`InferenceForward` for inputs of ``shape`` (C, H, W), or
        None when the engine is (or fell back to) dygraph."""
        if self.engine != "inference":
            return None
        shape = tuple(int(v) for v in shape)
        if shape not in self._inference:
            try:
                self._inference[shape] = InferenceForward(self.classifier.model, shape, self.cpu_threads)
            except Exception as e:  # noqa: BLE001  any failure of export or predictor: dygraph still works
                from ..deploy.paddle_compat import warn_once

                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                warn_once(f"{self.classifier.name}: Paddle Inference unavailable ({type(e).__name__}: {reason}); "
                          f"explainers run in dygraph")
                self.engine = "dygraph"
                return None
        return self._inference[shape]

    def logits(self, images):
        """Logits of a batch, no graph, through the runner's engine. [N, K] numpy."""
        self._ensure_eval()
        fast = self.forward_engine(images.shape[1:])
        if fast is not None:
            return fast.logits(images)
        with paddle.no_grad():
            return self.classifier.model(paddle.to_tensor(images)).numpy()

    def probabilities(self, images):
        """Softmax of the logits, no graph, through the runner's engine. [N, K] numpy."""
        self._ensure_eval()
        fast = self.forward_engine(images.shape[1:])
        if fast is not None:
            return softmax(fast.logits(images))
        with paddle.no_grad():
            logits = self.classifier.model(paddle.to_tensor(images))
            return F.softmax(logits, axis=1).numpy()

    def input_gradients(self, images, targets, gradient_of="probability"):
        """d score / d input for every row, [N, C, H, W] numpy (parameters frozen)."""
        self._ensure_eval()
        x = paddle.to_tensor(images)
        x.stop_gradient = False
        with frozen_parameters(self.classifier.model):
            logits = self.classifier.model(x)
            score = class_score(logits, targets, gradient_of)
            (grad,) = paddle.grad([score], [x])
        return grad.numpy()


class Explainer:
    """Base class. Subclasses implement :meth:`raw` (image-sized, unnormalised)."""

    name = "explainer"
    default_normalize = "relu_max"

    def __init__(self, classifier: Classifier, normalize="default", percentile=99.0, runner=None,
                 engine="dygraph"):
        if not isinstance(classifier, Classifier):
            raise TypeError("explainers take a paddle_pssl.classifiers.Classifier "
                            "(build_classifier, wrap_classifier or Classifier(...))")
        self.classifier = classifier
        self.runner = runner or ModelRunner(classifier, engine=engine)
        self.normalize = self.default_normalize if normalize == "default" else normalize
        if self.normalize is not None and self.normalize not in NORMALIZERS:
            raise ValueError(f"unknown normalize={self.normalize!r}; choose one of {sorted(NORMALIZERS)} or None")
        self.percentile = float(percentile)

    def raw(self, images, targets, shared: Optional[FeaturePass] = None, seeds=None):
        raise NotImplementedError

    def __call__(self, images, targets, seeds=None, shared: Optional[FeaturePass] = None, **extra):
        """Explain a batch: float32 [N, H, W] in [0, 1] (raw values if normalize=None).

        seeds: optional per-image seeds (random explainers), so a map does not
        depend on which batch or shard its image was in.
        shared: a :class:`FeaturePass` of this same batch, to skip a forward.
        """
        images, targets = as_batch(images, targets)
        raw = self.raw(images, targets, shared=shared, seeds=seeds, **extra)
        return normalize_maps(raw, self.normalize, self.percentile)

    def __repr__(self):
        return f"{type(self).__name__}(normalize={self.normalize!r})"


def image_rngs(default_rng, seeds, n):
    """Per-image RandomStates: fresh ones from `seeds`, else the explainer's own stream."""
    if seeds is None:
        return [default_rng] * n
    seeds = list(seeds)
    if len(seeds) != n:
        raise ValueError(f"{n} images but {len(seeds)} seeds")
    return [np.random.RandomState(int(s)) for s in seeds]


def chunks(total, size):
    """[(start, stop)] covering range(total) in pieces of at most `size`."""
    size = max(1, int(size))
    return [(i, min(i + size, total)) for i in range(0, total, size)]
