"""Several explainers on one classifier, sharing what they can.

* one forward of the clean batch gives the last features and the logits:
  CAM reads the features, GradCAM differentiates the head only (the backbone
  ran without a graph), LIME takes its unperturbed row's probability from it;
* LIME's superpixels are computed in background threads while the gradient
  explainers run (quickshift releases the GIL);
* every explainer uses the same :class:`ModelRunner` (parameters frozen for
  gradients, so no weight gradients are ever computed).
"""
import time

from ..classifiers.registry import Classifier
from .base import ModelRunner, as_batch

# explainers that need the clean forward (LIME reuses it when it exists)
_USES_FEATURES = {"cam", "gradcam"}


class ExplainerEnsemble:
    """``ensemble(images, targets) -> {name: float32 [N, H, W] in [0, 1]}``.

    explainers: a list of names, or ``{name: options}`` (options as for
    :func:`build_explainer`); ``**common`` options go to every explainer that
    accepts them (e.g. ``seed``).
    engine: ``'dygraph'`` or ``'inference'`` (forward-only passes through
    Paddle Inference, see :class:`~paddle_pssl.explainers.base.ModelRunner`;
    the label generator's default, its ``explainers_engine`` key);
    an explainer's own ``engine`` option overrides it for that explainer.
    """

    def __init__(self, classifier: Classifier, explainers=("cam", "gradcam", "smoothgrad", "lime"),
                 engine="dygraph", cpu_threads=None, **common):
        from . import build_explainer  # the registry lives in the package

        if not isinstance(explainers, dict):
            explainers = {name: {} for name in explainers}
        self.classifier = classifier
        self.runner = ModelRunner(classifier, engine=engine, cpu_threads=cpu_threads)
        self.explainers = {}
        for name, options in explainers.items():
            options = dict(options or {})
            runner = self.runner
            if options.get("engine", engine) != engine:  # e.g. lime: {engine: inference}
                runner = ModelRunner(classifier, engine=options.pop("engine"), cpu_threads=cpu_threads)
            options.pop("engine", None)
            self.explainers[name] = build_explainer(name, classifier, runner=runner, _common=common, **options)
        self.last_timings = {}

    def __call__(self, images, targets, seeds=None):
        images, targets = as_batch(images, targets)
        timings = {}
        start = time.perf_counter()
        lime = self.explainers.get("lime")
        pending = lime.prepare_async(images) if lime is not None else None

        shared = None
        if _USES_FEATURES & set(self.explainers):
            t0 = time.perf_counter()
            shared = self.runner.feature_pass(images)
            timings["shared_forward"] = time.perf_counter() - t0

        maps = {}
        # LIME last: its superpixels are being computed meanwhile
        order = sorted(self.explainers, key=lambda n: n == "lime")
        for name in order:
            t0 = time.perf_counter()
            extra = {"prepared": pending} if name == "lime" else {}
            maps[name] = self.explainers[name](images, targets, seeds=seeds, shared=shared, **extra)
            timings[name] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start
        self.last_timings = timings
        return maps


def explain_many(classifier, images, targets, names=("cam", "gradcam", "smoothgrad", "lime"), seeds=None, **options):
    """One-shot :class:`ExplainerEnsemble`: ``{name: maps}`` for the batch.

    ``options`` may hold per-explainer dicts keyed by name (``lime={'num_samples': 100}``)
    and common options (``seed=0``).
    """
    per_name = {name: options.pop(name, {}) for name in names}
    return ExplainerEnsemble(classifier, per_name, **options)(images, targets, seeds=seeds)
