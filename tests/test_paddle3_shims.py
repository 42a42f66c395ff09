"""The Paddle 3.3 shims (docs/install.md, stack defects): each one on the running
Paddle, whichever of the two stacks that is."""
import numpy as np
import paddle
import pytest
import yaml

from paddle_pssl import _paddleseg_compat as compat
from paddle_pssl.deploy import paddle_compat as pc
from paddle_pssl.deploy.infer import Predictor


def _reference_ce(logit, label, weight=None, ignore=255):
    """PaddleSeg's CrossEntropyLoss (avg_non_ignore, top_k 1.0) in numpy."""
    n, c = logit.shape[:2]
    z = logit.transpose(0, 2, 3, 1).reshape(-1, c).astype(np.float64)
    y = label.reshape(-1)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    valid = y != ignore
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    yv = np.where(valid, y, 0)
    per = -logp[np.arange(len(y)), yv] * w[yv] * valid
    return per.mean() / (np.mean(valid * w[yv]) + 1e-8)


@pytest.mark.parametrize('weight', [None, [0.1, 1.0, 2.0]])
def test_paddleseg_cross_entropy_runs_and_is_right(weight):
    from paddleseg.models.losses import CrossEntropyLoss
    rng = np.random.RandomState(0)
    logit = rng.randn(2, 3, 4, 5).astype('float32')
    label = rng.randint(0, 3, (2, 4, 5)).astype('int64')
    label[0, 0, :3] = 255
    loss = CrossEntropyLoss(weight=weight)(paddle.to_tensor(logit), paddle.to_tensor(label))
    assert float(loss) == pytest.approx(_reference_ce(logit, label, weight), rel=1e-5)


@pytest.mark.skipif(compat.PADDLE3, reason="PaddleSeg's own method fails on Paddle 3: nothing to compare")
@pytest.mark.parametrize('weight,top_k,non_ignore', [(None, 1.0, True), ([0.1, 1.0, 2.0], 1.0, True),
                                                     ([0.1, 1.0, 2.0], 0.5, True), (None, 0.5, False)])
def test_loss_shim_equals_paddleseg_bit_for_bit_where_both_run(weight, top_k, non_ignore):
    from paddleseg.models.losses import CrossEntropyLoss
    import paddle.nn.functional as F
    rng = np.random.RandomState(1)
    logit = paddle.to_tensor(rng.randn(2, 4, 5, 3).astype('float32'))   # NHWC, as forward passes it
    label = paddle.to_tensor(rng.randint(0, 3, (2, 4, 5)).astype('int64'))
    label[0, 0] = 255
    loss_fn = CrossEntropyLoss(weight=weight, top_k_percent_pixels=top_k, avg_non_ignore=non_ignore)
    raw = F.cross_entropy(logit, label, ignore_index=255, reduction='none', weight=loss_fn.weight)
    theirs = loss_fn._post_process_loss(logit, label, None, raw)
    ours = compat.post_process_loss(loss_fn, logit, label, None, raw)
    assert ours.numpy().tobytes() == theirs.numpy().tobytes()


def test_only_paddle3_gets_the_loss_shim():
    from paddleseg.models.losses import CrossEntropyLoss
    installed = CrossEntropyLoss._post_process_loss is compat.post_process_loss
    assert installed == (int(paddle.__version__.split('.')[0]) >= 3)


class _Interp(paddle.nn.Layer):
    def __init__(self, mode):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 2, 3, padding=1)
        self.mode = mode

    def forward(self, x):
        y = self.conv(x)
        if self.mode:
            y = paddle.nn.functional.interpolate(y, scale_factor=2, mode=self.mode)
        return y


def _save(layer, prefix):
    layer.eval()
    static = paddle.jit.to_static(layer, input_spec=[paddle.static.InputSpec([None, 3, 8, 8], 'float32')],
                                  full_graph=True)
    paddle.jit.save(static, str(prefix))
    return pc.program_file(str(prefix))


def test_program_file_and_interpolation_detection(tmp_path):
    plain = _save(_Interp(None), tmp_path / 'plain')
    bilinear = _save(_Interp('bilinear'), tmp_path / 'bilinear')
    assert plain.endswith('.json' if compat.PADDLE3 else '.pdmodel')
    assert pc.memory_optim_ok(plain) == (not compat.PADDLE3)
    assert not pc.interpolates(plain) and pc.interpolates(bilinear)


def test_program_file_ignores_a_stale_file_of_the_other_format(tmp_path):
    prefix = str(tmp_path / 'model')
    program = _save(_Interp(None), prefix)
    stale = prefix + ('.pdmodel' if program.endswith('.json') else '.json')
    open(stale, 'w').close()
    assert pc.program_file(prefix) == program
    with pytest.raises(FileNotFoundError):
        pc.program_file(str(tmp_path / 'absent'))


class _Config:
    def __init__(self):
        self.calls = []

    def enable_mkldnn(self):
        self.calls.append('on')

    def disable_mkldnn(self):
        self.calls.append('off')


@pytest.mark.parametrize('mode', [None, 'bilinear'])
@pytest.mark.parametrize('wanted', [False, True])
def test_onednn_switch(tmp_path, capfd, mode, wanted):
    model = _save(_Interp(mode), tmp_path / 'model')
    config = _Config()
    on = pc.set_onednn(config, model, wanted)
    err = capfd.readouterr().err
    refused = compat.PADDLE3 and wanted and mode is not None
    assert on == (wanted and not refused)
    if compat.PADDLE3:   # explicit either way: Paddle 3.3 turns oneDNN on by default
        assert config.calls == (['on'] if on else ['off'])
    else:
        assert config.calls == (['on'] if wanted else [])
    if refused:
        assert len(err.strip().splitlines()) == 1 and err.startswith('warning: ') and 'oneDNN' in err
    else:
        assert err == ''


@pytest.mark.parametrize('mkldnn', [False, True])
def test_predictor_runs_an_interpolating_model_on_cpu(tmp_path, mkldnn):
    layer = _Interp('bilinear')
    layer.eval()
    x = np.random.RandomState(0).rand(2, 3, 8, 8).astype('float32')
    expected = layer(paddle.to_tensor(x)).numpy()
    model = _save(layer, tmp_path / 'model')
    with open(tmp_path / 'deploy.yaml', 'w') as f:
        yaml.safe_dump({'Deploy': {'model': model.rsplit('/', 1)[1], 'params': 'model.pdiparams',
                                   'transforms': [{'type': 'Normalize'}], 'output_op': 'none'}}, f)
    out = Predictor(str(tmp_path), enable_mkldnn=mkldnn).run(x)
    assert out.shape == (2, 2, 16, 16)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
