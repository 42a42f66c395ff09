"""The M&M tuning stage through tools/train.py's train_main: tunes only the
backbone, writes a full-model checkpoint that fine-tune configs load, logs the
triplet loss to VisualDL, resumes exactly, and runs only for mm_tuning configs."""
import math
import os

import numpy as np
import paddle
import pytest
import yaml

from paddle_pssl.tools_impl import train_main
from paddle_pssl.config import load_config
from paddle_pssl.utils.errors import PSSLError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MM_BASE = os.path.join(REPO, 'configs', 'mm_tuning', 'deeplabv3p_resnet18_vd_benchmark.yml')
FT_BASE = os.path.join(REPO, 'configs', 'benchmark', 'finetune.yml')


def _write(path, dic):
    with open(path, 'w') as f:
        yaml.safe_dump(dic, f)
    return str(path)


def _data(target):
    data = {'dataset_root': target['dataset_root'], 'num_classes': target['num_classes']}
    return {'model': {'num_classes': target['num_classes']},
            'train_dataset': dict(data, train_path=target['train_path']),
            'val_dataset': dict(data, val_path=target['val_path'])}


def _mm_config(tmp, target, start):
    dic = dict(_data(target), _base_=MM_BASE)
    dic['model']['pretrained'] = start
    dic['mm_tuning'] = {'sampler': {'num_patches': 6, 'min_size': 16, 'max_size': 48,
                                    'out_size': 32}}
    return _write(tmp / 'mm.yml', dic)


def _ft_config(tmp, target, pretrained=None):
    dic = dict(_data(target), _base_=FT_BASE)
    dic['model']['pretrained'] = pretrained
    return _write(tmp / 'ft.yml', dic)


def _build(cfg_path):
    from paddleseg.cvlibs import SegBuilder
    return SegBuilder(load_config(cfg_path)).model


def _tune(cfg, save_dir, iters, *extra):
    train_main(['-c', cfg, '--iters', str(iters), '--batch_size', '2', '--log_iters', '1',
                '--save_interval', '2', '--use_vdl', '--seed', '0', '--save_dir', str(save_dir),
                *extra])
    return os.path.join(str(save_dir), f'iter_{iters}', 'model.pdparams')


from paddle_pssl.utils.vdl import read_scalars as _read_scalars  # noqa: E402


@pytest.fixture(scope='module')
def tuned(tmp_path_factory, toy_target):
    tmp = tmp_path_factory.mktemp('mm_train')
    paddle.seed(5)
    start = str(tmp / 'start.pdparams')  # stands in for a PSSL checkpoint
    paddle.save(_build(_ft_config(tmp, toy_target)).state_dict(), start)
    cfg = _mm_config(tmp, toy_target, start)
    weights = _tune(cfg, tmp / 'run', 4)
    return {'tmp': tmp, 'cfg': cfg, 'start': start, 'weights': weights, 'run': str(tmp / 'run'),
            'target': toy_target}


def test_tuning_moves_every_backbone_tensor_and_no_head_tensor(tuned):
    start, end = paddle.load(tuned['start']), paddle.load(tuned['weights'])
    assert set(start) == set(end)
    backbone = [k for k in start if k.startswith('backbone.')]
    head = [k for k in start if not k.startswith('backbone.')]
    assert backbone and head
    unchanged = [k for k in backbone if np.array_equal(start[k].numpy(), end[k].numpy())]
    assert not unchanged, unchanged
    for k in head:
        np.testing.assert_array_equal(start[k].numpy(), end[k].numpy(), err_msg=k)
    assert os.path.isfile(os.path.join(tuned['run'], 'iter_4', 'model.pdopt'))


def test_finetune_config_loads_the_tuned_checkpoint(tuned):
    model = _build(_ft_config(tuned['tmp'], tuned['target'], tuned['weights']))
    saved = paddle.load(tuned['weights'])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), saved[k].numpy(), err_msg=k)


def test_triplet_loss_is_finite_and_logged(tuned):
    losses = _read_scalars(tuned['run'], 'Train/loss')
    assert len(losses) == 4 and all(math.isfinite(v) and v > 0 for v in losses), losses
    assert len(_read_scalars(tuned['run'], 'Triplet/triplets')) == 4
    lrs = _read_scalars(tuned['run'], 'Train/lr')
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.001)  # x0.1 at 75 %


def test_resume_replays_the_same_batches(tuned):
    resumed = _tune(tuned['cfg'], tuned['tmp'] / 'resumed', 4, '--resume_model',
                    os.path.join(tuned['run'], 'iter_2'))
    a, b = paddle.load(tuned['weights']), paddle.load(resumed)
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


def test_dispatch_only_for_mm_tuning_configs(tuned, tmp_path, monkeypatch):
    import paddle_pssl.core
    import paddle_pssl.mm_tuning.train as mm_train
    calls = []
    monkeypatch.setattr(mm_train, 'train_mm', lambda *a, **k: calls.append(('mm', k)))
    monkeypatch.setattr(paddle_pssl.core, 'train', lambda *a, **k: calls.append(('seg', k)))
    argv = ['--iters', '7', '--batch_size', '3', '--seed', '1', '--save_dir', str(tmp_path)]
    train_main(['-c', tuned['cfg'], *argv])
    train_main(['-c', _ft_config(tmp_path, tuned['target']), *argv])
    assert [c[0] for c in calls] == ['mm', 'seg']
    assert calls[0][1]['iters'] == 7 and calls[0][1]['batch_size'] == 3 and calls[0][1]['seed'] == 1


def test_unknown_mm_tuning_key_is_one_line_error():
    from paddle_pssl.config import mm_tuning_settings
    with pytest.raises(PSSLError, match="did you mean 'margin'"):
        mm_tuning_settings({'margn': 2.1})
    with pytest.raises(PSSLError, match='mm_tuning.sampler'):
        mm_tuning_settings({'sampler': {'out_sise': 32}})
