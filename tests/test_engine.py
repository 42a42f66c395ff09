"""The explainers' fast engine: Paddle Inference (oneDNN on CPU) forwards equal
dygraph's, the forward-only explainers use it, the generator turns it on by
default, and a model it cannot run falls back to dygraph with one warning."""
import warnings

import numpy as np
import pytest

import paddle
import paddle.nn as nn

from paddle_pssl.classifiers import IMAGENET_MEAN, IMAGENET_STD, Classifier, build_classifier
from paddle_pssl.config import validate
from paddle_pssl.explainers import ExplainerEnsemble, ModelRunner, build_explainer
from paddle_pssl.explainers import base as explainer_base
from paddle_pssl.utils import PSSLError


def photos(size):
    """Three real photos, stretched to size x size, uint8 RGB."""
    import cv2
    from skimage import data

    return np.stack([cv2.resize(p[..., :3], (size, size), interpolation=cv2.INTER_AREA)
                     for p in (data.coffee(), data.chelsea(), data.astronaut())])


@pytest.fixture(scope="module")
def lite0():
    return build_classifier("efficientnet_lite0")


@pytest.fixture(scope="module")
def resnet18():
    from paddleclas.ppcls.arch.backbone.legendary_models.resnet import ResNet18

    paddle.seed(0)
    model = ResNet18(class_num=1000)  # random weights: PaddleClas's are not offline
    model.eval()
    return Classifier(model, "resnet18", "blocks.7", input_size=224, fc_layer="fc",
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)


class TinyNet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2D(3, 4, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(paddle.flatten(self.pool(self.features(x)), 1))


@pytest.fixture(scope="module")
def tiny():
    paddle.seed(2)
    model = TinyNet()
    model.eval()
    return Classifier(model, "tiny", "features", input_size=32, num_classes=5, fc_layer="fc")


@pytest.mark.parametrize("which", ["lite0", "resnet18"])
def test_inference_forwards_equal_dygraph(which, request):
    clf = request.getfixturevalue(which)
    x = clf.normalize(photos(clf.input_size))
    dygraph = ModelRunner(clf, engine="dygraph")
    fast = ModelRunner(clf, engine="inference")
    logits_d, logits_f = dygraph.logits(x), fast.logits(x)
    assert fast.engine == "inference" and fast._inference  # the predictor ran, no fallback
    assert logits_d.shape == logits_f.shape == (3, 1000)
    # the engine rounds differently (oneDNN), not differently enough to matter
    assert np.abs(logits_d - logits_f).max() <= 1e-4 * max(1.0, np.abs(logits_d).max())
    assert np.abs(dygraph.probabilities(x) - fast.probabilities(x)).max() <= 1e-4
    assert np.array_equal(logits_d.argmax(1), logits_f.argmax(1))
    if which == "lite0":  # real weights: espresso, and a cat class (281-285) for chelsea
        assert logits_f.argmax(1)[0] == 967 and 281 <= logits_f.argmax(1)[1] <= 285


def test_forward_only_explainers_use_the_engine(tiny):
    x = tiny.normalize(photos(32))
    targets = [1, 2, 3]
    for name, options in [("occlusion", dict(window=8, stride=8)), ("scorecam", {}),
                          ("lime", dict(num_samples=40, batch_size=20, seed=0))]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slow = build_explainer(name, tiny, **options)(x, targets)
            fast_explainer = build_explainer(name, tiny, engine="inference", **options)
            fast = fast_explainer(x, targets)
        assert fast_explainer.runner._inference, name  # its forwards went through the predictor
        assert np.abs(slow - fast).max() < 1e-3, name


def test_engine_falls_back_to_dygraph_with_one_warning(tiny, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no predictor here\nsecond line")

    monkeypatch.setattr(explainer_base, "InferenceForward", broken)
    monkeypatch.setattr("paddle_pssl.deploy.paddle_compat._warned", set())
    x = tiny.normalize(photos(32))
    ensemble = ExplainerEnsemble(tiny, {"lime": dict(num_samples=8, batch_size=8)}, engine="inference", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ensemble(x, [0, 1, 2])
        ensemble(x, [0, 1, 2])
    assert ensemble.runner.engine == "dygraph"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: tiny: Paddle Inference unavailable (RuntimeError: "
                                              "no predictor here)")
    expected = ModelRunner(tiny).probabilities(x)
    assert np.array_equal(ensemble.runner.probabilities(x), expected)


def test_generator_engine_is_a_config_switch(tiny, monkeypatch, tmp_path):
    from paddle_pssl.pseudo_labels import generate

    cfg = {'source': {'image_root': str(tmp_path)}}
    assert validate('generator', cfg)['explainers_engine'] == 'inference'
    with pytest.raises(PSSLError, match='explainers_engine'):
        validate('generator', dict(cfg, explainers_engine='onnx'))
    monkeypatch.setattr(generate, 'load_classifiers', lambda entries: [('tiny', tiny)])
    for engine in ('inference', 'dygraph'):
        gen = generate.PseudoLabelGenerator.__new__(generate.PseudoLabelGenerator)
        gen.cfg = validate('generator', dict(cfg, explainers_engine=engine, explainers={'cam': {}, 'lime': {}}))
        gen._ensembles = None
        gen._ensure_models()
        (ensemble,) = gen._ensembles
        assert {e.runner.engine for e in ensemble.explainers.values()} == {engine}
