"""Explainers: interface, exactness (CAM, GradCAM), and agreement of the batched
SmoothGrad / Integrated Gradients / LIME with InterpretDL 0.8.0's own
one-image interpreters. CPU, random weights, 64x64 real photos."""
import warnings

import numpy as np
import pytest

import paddle
import paddle.nn as nn

from paddle_pssl.classifiers import IMAGENET_MEAN, IMAGENET_STD, Classifier
from paddle_pssl.explainers import ExplainerEnsemble, build_explainer, explain_many
from paddle_pssl.explainers.base import upsample
from paddle_pssl.explainers.lime import normalisation_lut, restore_uint8
from paddle_pssl.explainers.interpretdl_shims import (GradCAMInterpreterFixed, LIMECVInterpreterFixed,
                                                      interpretdl_reference)

SIZE = 64
TARGETS = [1, 3, 7]


def photos_uint8(size=SIZE):
    from skimage import data
    from skimage.transform import resize

    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    return np.stack([(resize(p, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8) for p in photos])


def normalise(u8, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    x = (u8.astype(np.float32) / 255 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


class TinyNet(nn.Layer):
    """conv features at 1/2 resolution -> GAP -> linear; 8 channels (cheap Score-CAM)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2D(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2D(8, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(paddle.flatten(self.pool(self.features(x)), 1))


@pytest.fixture(scope="module")
def resnet():
    from paddleclas.ppcls.arch.backbone.legendary_models.resnet import ResNet18

    paddle.seed(0)
    model = ResNet18(class_num=10)
    model.eval()
    # PaddleClas ResNet: stem -> max_pool -> blocks (last: blocks.7) -> avg_pool -> flatten -> fc
    return Classifier(model, "resnet18", "blocks.7", input_size=SIZE, num_classes=10, fc_layer="fc")


@pytest.fixture(scope="module")
def tiny():
    paddle.seed(1)
    model = TinyNet()
    model.eval()
    return Classifier(model, "tiny", "features", input_size=SIZE, num_classes=10, fc_layer="fc")


@pytest.fixture(scope="module")
def images():
    return normalise(photos_uint8())


def resnet_features(spec, x):
    m = spec.model
    with paddle.no_grad():
        return m.blocks(m.max_pool(m.stem(paddle.to_tensor(x)))).numpy()


FAST_OPTIONS = {
    "cam": {},
    "gradcam": {},
    "smoothgrad": dict(n_samples=3, seed=0),
    "intgrad": dict(steps=3),
    "lime": dict(num_samples=40, seed=0),
    "occlusion": dict(window=32, stride=32),
    "scorecam": {},
}


@pytest.mark.parametrize("name", sorted(FAST_OPTIONS))
def test_output_contract(name, tiny, resnet, images):
    spec = tiny if name in ("scorecam", "occlusion") else resnet
    explainer = build_explainer(name, spec, **FAST_OPTIONS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LIME with few samples: sklearn's ill-conditioned warnings
        maps = explainer(images, TARGETS)
    assert maps.shape == (len(images), SIZE, SIZE)
    assert maps.dtype == np.float32
    assert np.all(np.isfinite(maps))
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    peaks = maps.reshape(len(maps), -1).max(1)
    # max-normalised: a map peaks at 1, or is all 0 (nothing positive, e.g. a
    # random-weight CAM that is negative everywhere)
    assert np.all(np.isclose(peaks, 1.0) | (peaks == 0.0)) and peaks.max() == 1.0


def test_cam_equals_hand_computation(resnet, images):
    feats = resnet_features(resnet, images)  # [N, 512, 2, 2]
    weight = resnet.model.fc.weight.numpy()  # [512, 10]
    bias = resnet.model.fc.bias.numpy()
    hand = np.stack([np.tensordot(weight[:, t], f, axes=(0, 0)) for f, t in zip(feats, TARGETS)])
    raw = build_explainer("cam", resnet, normalize=None, relu=False)(images, TARGETS)
    np.testing.assert_allclose(raw, upsample(hand, (SIZE, SIZE)), rtol=1e-5, atol=1e-5 * np.abs(hand).max())
    # at feature resolution, spatial mean of CAM + bias is the logit
    with paddle.no_grad():
        logits = resnet.model(paddle.to_tensor(images)).numpy()
    np.testing.assert_allclose(hand.mean((1, 2)) + bias[TARGETS], logits[np.arange(3), TARGETS], rtol=1e-5, atol=1e-5)
    # the normalised map: ReLU, upsample, divide by max (all-zero maps stay 0)
    up = upsample(np.maximum(hand, 0), (SIZE, SIZE))
    peak = up.reshape(3, -1).max(1)[:, None, None]
    expected = up / np.where(peak > 0, peak, 1)
    np.testing.assert_allclose(build_explainer("cam", resnet)(images, TARGETS), expected, atol=1e-5)


def test_cam_reads_the_fc_layer_live(images):
    paddle.seed(4)
    model = TinyNet()
    model.eval()
    by_layer = Classifier(model, "tiny", "features", num_classes=10, fc_layer=model.fc)  # the layer, not its name
    by_name = Classifier(model, "tiny", "features", num_classes=10, fc_layer="fc")
    assert by_name.fc_layer is model.fc
    cam = build_explainer("cam", by_layer, normalize=None)
    before = cam(images, TARGETS)
    np.testing.assert_array_equal(build_explainer("cam", by_name, normalize=None)(images, TARGETS), before)
    # the explainer built before the weights change sees the new weights
    model.fc.weight.set_value(model.fc.weight.numpy() * 2)
    np.testing.assert_allclose(cam(images, TARGETS), before * 2, rtol=1e-5, atol=1e-6)
    # fc_weight is class-major [K, C]: the CAM of class t is W[t] . features
    assert by_layer.fc_weight().shape == (10, 8)
    with paddle.no_grad():
        feats = model.features(paddle.to_tensor(images)).numpy()
    hand = np.einsum("nchw,nc->nhw", feats, by_layer.fc_weight()[TARGETS])
    np.testing.assert_allclose(build_explainer("cam", by_layer, normalize=None, relu=False)(images, TARGETS),
                               upsample(hand, (SIZE, SIZE)), rtol=1e-5, atol=1e-6)


def test_gradcam_proportional_to_cam_on_gap_linear(resnet, tiny, images):
    for spec in (resnet, tiny):
        cam = build_explainer("cam", spec)(images, TARGETS)
        gradcam = build_explainer("gradcam", spec, gradient_of="logit")(images, TARGETS)
        np.testing.assert_allclose(gradcam, cam, atol=1e-5)


def test_smoothgrad_one_sample_no_noise_is_the_gradient(resnet, images):
    for gradient_of in ("probability", "logit"):
        explainer = build_explainer("smoothgrad", resnet, n_samples=1, noise_amount=0.0, gradient_of=gradient_of)
        ours = explainer.attributions(images, np.array(TARGETS))
        x = paddle.to_tensor(images)
        x.stop_gradient = False
        logits = resnet.model(x)
        out = paddle.nn.functional.softmax(logits, 1) if gradient_of == "probability" else logits
        score = paddle.sum(out * paddle.nn.functional.one_hot(paddle.to_tensor(TARGETS), 10))
        (grad,) = paddle.grad([score], [x])
        grad = grad.numpy()
        np.testing.assert_allclose(ours, grad, rtol=1e-4, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("name", ["cam", "gradcam", "smoothgrad", "lime"])
def test_target_class_matters(name, resnet, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = dict(FAST_OPTIONS[name])
        a = build_explainer(name, resnet, **options)(images[:1], [1])
        b = build_explainer(name, resnet, **options)(images[:1], [4])  # fresh: same random stream
    assert np.abs(a - b).max() > 0.05


# Agreement with InterpretDL 0.8.0, one image per call, same random streams.
# The inputs of every forward are then bit-identical; what remains is float32
# summation order (gradients summed per chunk instead of one by one) and
# batch-size dependent kernels, ~1e-6 on maps in [0, 1]. 1e-4 leaves margin.
# LIME has more samples than superpixels here, so its least-squares fit is well
# posed and not sensitive to those rounding differences.
@pytest.mark.parametrize("name,options", [
    ("gradcam", dict(gradient_of="probability")),
    ("gradcam", dict(gradient_of="logit")),
    ("smoothgrad", dict(n_samples=4, noise_amount=0.15, seed=3, batch_size=5)),
    ("intgrad", dict(steps=4, batch_size=5)),
    ("lime", dict(num_samples=80, seed=5, batch_size=32)),
])
def test_agrees_with_interpretdl(name, options, resnet, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = build_explainer(name, resnet, **options)
        ours = explainer(images, TARGETS)
        if name == "lime":
            n_superpixels = [s.max() + 1 for s in explainer.last_segments]
            assert max(n_superpixels) < options["num_samples"], n_superpixels
        reference = interpretdl_reference(explainer, images, TARGETS, seed=options.get("seed"))
    assert np.abs(ours - reference).max() < 1e-4


def test_random_explainers_seeded_and_batch_independent(resnet, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("smoothgrad", "lime"):
            options = dict(FAST_OPTIONS[name])
            seeds = [11, 12, 13]
            batch = build_explainer(name, resnet, **options)(images, TARGETS, seeds=seeds)
            single = np.concatenate([build_explainer(name, resnet, **options)(images[i:i + 1], TARGETS[i:i + 1],
                                                                              seeds=seeds[i:i + 1])
                                     for i in range(3)])
            np.testing.assert_allclose(batch, single, atol=1e-5)
            again = build_explainer(name, resnet, **options)(images, TARGETS, seeds=seeds)
            np.testing.assert_allclose(batch, again, atol=1e-6)


def test_ensemble_shares_the_forward(resnet, images):
    calls = []
    handle = resnet.model.register_forward_pre_hook(lambda layer, inputs: calls.append(inputs[0].shape[0]))
    try:
        ensemble = ExplainerEnsemble(resnet, ["cam", "gradcam"])
        maps = ensemble(images, TARGETS)
        assert calls == [3]  # one forward of the clean batch for both
        calls.clear()
        options = {"lime": dict(num_samples=20, batch_size=19), "smoothgrad": dict(n_samples=2, batch_size=6)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            maps = explain_many(resnet, images, TARGETS, seed=0, **options)
        # 1 shared + 1 SmoothGrad chunk (6 rows) + 3 LIME chunks (3 x 19 rows: row 0 reused)
        assert sorted(calls) == [3, 6, 19, 19, 19]
    finally:
        handle.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("cam", "gradcam", "smoothgrad", "lime"):
            alone = build_explainer(name, resnet, seed=0, **options.get(name, {})) if name in options else \
                build_explainer(name, resnet)
            # LIME's unperturbed row comes from the shared forward (another
            # batch: ~1e-7 apart); with 20 samples for more superpixels the fit
            # is underdetermined and amplifies that to ~1e-4
            atol = 1e-3 if name == "lime" else 1e-5
            np.testing.assert_allclose(maps[name], alone(images, TARGETS), atol=atol)
    assert set(ensemble.last_timings) >= {"shared_forward", "cam", "gradcam", "total"}


def test_lime_uint8_round_trip_any_normalisation():
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    for mean, std in ((IMAGENET_MEAN, IMAGENET_STD), ((127 / 255,) * 3, (128 / 255,) * 3)):
        x = normalise(values, mean, std)
        np.testing.assert_array_equal(restore_uint8(x, mean, std), values)
        lut = normalisation_lut(mean, std)
        np.testing.assert_allclose(lut[:, values[0, ..., 0]], x[0], atol=1e-6)


def test_lime_with_non_imagenet_normalisation(tiny):
    mean, std = (127 / 255,) * 3, (128 / 255,) * 3  # EfficientNet-Lite's (x - 127) / 128
    clf = Classifier(tiny.model, "tiny", "features", num_classes=10, fc_layer="fc", mean=mean, std=std)
    u8 = photos_uint8()[:1]
    explainer = build_explainer("lime", clf, num_samples=30, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = explainer(normalise(u8, mean, std), [2])
    assert maps.shape == (1, SIZE, SIZE) and maps.max() == 1.0
    # the superpixels were computed on the true photo
    from skimage.segmentation import quickshift

    np.testing.assert_array_equal(explainer.last_segments[0], quickshift(u8[0], sigma=1))


def test_options_are_checked(resnet):
    with pytest.raises(ValueError):
        build_explainer("nope", resnet)
    with pytest.raises(TypeError):
        build_explainer("cam", resnet, n_samples=3)
    with pytest.raises(ValueError):
        build_explainer("cam", resnet, normalize="sigmoid")
    with pytest.raises(ValueError):
        Classifier(resnet.model, "resnet18", "blocks.99")
    with pytest.raises(ValueError, match="0..1"):
        Classifier(resnet.model, "resnet18", "blocks.7", mean=(123.675, 116.28, 103.53))
    with pytest.raises(TypeError):
        build_explainer("cam", resnet.model)
    with pytest.raises(ValueError):
        build_explainer("cam", resnet)(np.zeros((2, 3, 8, 8), np.float32), [1])


def test_train_mode_model_is_switched_to_eval(images):
    paddle.seed(2)
    model = TinyNet()
    model.train()
    clf = Classifier(model, "tiny", "features", num_classes=10, fc_layer="fc")
    with pytest.warns(UserWarning, match="eval mode"):
        build_explainer("cam", clf)(images, TARGETS)
    assert not model.training


def test_interpretdl_shims_fix_0_8_0(images):
    from interpretdl import GradCAMInterpreter

    paddle.seed(3)
    model = TinyNet()
    model.eval()
    # the defect: 0.8.0 reads .grad of the hooked feature map, None on Paddle >= 2.4
    with pytest.raises(Exception):
        GradCAMInterpreter(model, device="cpu").interpret(images[:1], "features", label=[1], visual=False)
    model = TinyNet()
    model.eval()
    fixed = GradCAMInterpreterFixed(model, gradient_of="logit")
    cam = fixed.interpret(images[:2], "features", label=[1, 2], visual=False)
    assert cam.shape == (2, SIZE // 2, SIZE // 2) and not model.training
    assert all(not layer._forward_post_hooks for layer in model.sublayers())  # hook removed
    # 0.8.0's LIME reuses the first image's superpixels; the fixed one does not
    lime = LIMECVInterpreterFixed(model, random_seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segments = []
        for i in range(2):
            lime.interpret(images[i:i + 1], interpret_class=1, num_samples=4, batch_size=4, visual=False)
            segments.append(lime.lime_results["segmentation"].copy())
    assert not np.array_equal(segments[0], segments[1])


def test_lime_inference_engine_matches_dygraph(resnet, images):
    """Paddle Inference (oneDNN) for LIME's forwards: logits ~1e-5 relative
    apart from dygraph; with more samples than superpixels the maps agree."""
    options = dict(num_samples=80, seed=5, batch_size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dygraph = build_explainer("lime", resnet, **options)(images, TARGETS)
        fast = build_explainer("lime", resnet, engine="inference", **options)(images, TARGETS)
    assert np.abs(dygraph - fast).max() < 1e-3
    ensemble = ExplainerEnsemble(resnet, {"cam": {}, "lime": dict(engine="inference", **options)})
    assert ensemble.explainers["lime"].runner.engine == "inference"
    assert ensemble.explainers["cam"].runner.engine == "dygraph"
    assert not hasattr(resnet.model.forward, "concrete_program")  # the caller's layer is not converted
