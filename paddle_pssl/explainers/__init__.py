"""Explainers: saliency maps of image classifiers, batched, on InterpretDL.

Interface (after pytorch-grad-cam); explainers take the project's one
description of a classifier, :class:`paddle_pssl.classifiers.Classifier`::

    clf = build_classifier("efficientnet_lite0")      # or wrap_classifier(model, name)
    # or Classifier(model, "resnet18", "blocks.7", fc_layer="fc", mean=..., std=...)
    explainer = build_explainer("gradcam", clf)
    maps = explainer(images, target_classes)     # float32 [N, H, W] in [0, 1]

    maps = ExplainerEnsemble(clf, ["cam", "gradcam", "smoothgrad", "lime"],
                             seed=0)(images, target_classes)   # {name: maps}

``images``: float32 NCHW, the classifier's normalisation applied (RGB);
``target_classes``: the dataset's class ids. Per-map normalisation is an
option of every explainer (``normalize=``; ``None`` gives raw maps):

=========== ============================================ ===============
name        map                                          default normalize
=========== ============================================ ===============
cam         sum_k W[c, k] f_k, upsampled                 relu_max
gradcam     ReLU(mean_k mean(dS/df_k) f_k), upsampled    relu_max
            (both: ``scales`` and ``flip``, the mean over
            resized and mirrored inputs; see :mod:`.cam`)
smoothgrad  |mean grad over noisy copies|, summed over   percentile (99)
            colour channels (``channel_reduce``)
intgrad     |(x - 0) * mean grad on the path|, same      percentile (99)
lime        superpixel weights painted on superpixels    relu_max
occlusion   InterpretDL's OcclusionInterpreter           relu_max
scorecam    InterpretDL's ScoreCAMInterpreter            relu_max
=========== ============================================ ===============

``relu_max``: negative part to 0, divided by the max; ``percentile``: divided by
the map's 99th percentile and clipped at 1; also ``minmax`` and ``abs_max``.
InterpretDL's one-image reference (and the shims that fix 0.8.0 on Paddle 2.6)
is in :mod:`paddle_pssl.explainers.interpretdl_shims`.
"""
import inspect

from .base import NORMALIZERS, Explainer, FeaturePass, ModelRunner, normalize_maps  # noqa: F401
from .cam import CAMExplainer, GradCAMExplainer, check_scales  # noqa: F401
from .lime import LIMEExplainer  # noqa: F401
from .smoothgrad import IntegratedGradientsExplainer, SmoothGradExplainer  # noqa: F401
from .adapters import OcclusionExplainer, ScoreCAMExplainer  # noqa: F401
from .ensemble import ExplainerEnsemble, explain_many  # noqa: F401

EXPLAINERS = {
    "cam": CAMExplainer,
    "gradcam": GradCAMExplainer,
    "smoothgrad": SmoothGradExplainer,
    "intgrad": IntegratedGradientsExplainer,
    "lime": LIMEExplainer,
    "occlusion": OcclusionExplainer,
    "scorecam": ScoreCAMExplainer,
}
_ALIASES = {"grad_cam": "gradcam", "smooth_grad": "smoothgrad", "integrated_gradients": "intgrad",
            "score_cam": "scorecam"}


def _accepted(cls):
    names = set()
    for klass in cls.__mro__:
        if klass is object:
            break
        names |= set(inspect.signature(klass.__init__).parameters)
    return names - {"self", "classifier", "kwargs"}


def build_explainer(name, classifier, _common=None, **options):
    """Build an explainer by name (see :data:`EXPLAINERS`) with its options.

    ``_common`` options (from :class:`ExplainerEnsemble`) are passed only to
    explainers that accept them; unknown ``options`` raise.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; choose one of {sorted(EXPLAINERS)}")
    cls = EXPLAINERS[key]
    accepted = _accepted(cls)
    unknown = set(options) - accepted
    if unknown:
        raise TypeError(f"explainer {key!r} got unknown options {sorted(unknown)}; it accepts {sorted(accepted)}")
    merged = {k: v for k, v in (_common or {}).items() if k in accepted}
    merged.update(options)
    return cls(classifier, **merged)


# Options that count something (samples, steps, pixels): whole numbers >= 1.
_COUNT_OPTIONS = ("n_samples", "num_samples", "batch_size", "steps", "window", "stride",
                  "perturbations_per_eval")
# Options a config may not set: the generator supplies them.
_INTERNAL_OPTIONS = ("runner",)


def check_explainer_options(explainers, key="explainers"):
    """Why the ``explainers`` setting of a config (a mapping name: options, or
    a list of names) cannot be built, as one line ``<key.path> ...``, or None.
    Checked by name against each explainer's signature, before any model loads."""
    import difflib

    def _close(name, known):
        close = difflib.get_close_matches(str(name), sorted(known), n=1)
        return f" (did you mean '{close[0]}'?)" if close else ""

    if not isinstance(explainers, dict):
        explainers = {name: {} for name in explainers}
    for name, options in explainers.items():
        where = f"{key}.{name}"
        known = EXPLAINERS.keys() | _ALIASES.keys()
        if not isinstance(name, str) or name.lower() not in known:
            return f"{where}: unknown explainer{_close(name, EXPLAINERS)}; known: {', '.join(EXPLAINERS)}"
        if options is None:
            continue
        if not isinstance(options, dict):
            return f"{where} {options!r}: must be a mapping of options"
        canonical = _ALIASES.get(name.lower(), name.lower())
        accepted = (_accepted(EXPLAINERS[canonical]) | {"engine"}) - set(_INTERNAL_OPTIONS)
        if canonical == "gradcam":
            accepted |= {"only_without_cam"}   # the label generator's: Grad-CAM where no exact CAM
            if not isinstance(options.get("only_without_cam", False), bool):
                return f"{where}.only_without_cam {options['only_without_cam']!r}: must be true or false"
        for option, value in options.items():
            if option not in accepted:
                return (f"{where}.{option}: unknown option of {name}{_close(option, accepted)}; "
                        f"it accepts {', '.join(sorted(accepted))}")
            if option in _COUNT_OPTIONS and value is not None and (
                    not isinstance(value, int) or isinstance(value, bool) or value < 1):
                return f"{where}.{option} {value!r}: must be an integer >= 1"
            if option == "scales" and value is not None and check_scales(value):
                return f"{where}.scales {value!r}: {check_scales(value)}"
            if option == "flip" and not isinstance(value, bool):
                return f"{where}.flip {value!r}: must be true or false"
    return None


__all__ = ["build_explainer", "check_explainer_options", "EXPLAINERS", "ExplainerEnsemble", "explain_many",
           "Explainer", "CAMExplainer", "GradCAMExplainer", "SmoothGradExplainer",
           "IntegratedGradientsExplainer", "LIMEExplainer", "OcclusionExplainer", "ScoreCAMExplainer",
           "normalize_maps", "NORMALIZERS", "ModelRunner", "FeaturePass"]
