"""The three pre-train recipes run end to end at tiny size, log to VisualDL,
and fine-tuning loads every matching parameter but the 1001-class outputs."""
import math
import os

import numpy as np
import paddle
import pytest
import yaml

from paddle_pssl.tools_impl import train_main
from paddle_pssl.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ['pspnet_resnet50_vd', 'deeplabv3_resnet50_vd', 'ocrnet_hrnetw18']


def _write(path, dic):
    with open(path, 'w') as f:
        yaml.safe_dump(dic, f)
    return str(path)


@pytest.fixture(scope='module')
def fixed_batch_store(toy_pssl):
    """A file list of two images: with batch size 2 every step sees the same batch."""
    rels = open(os.path.join(toy_pssl['pssl_root'], 'train.txt')).read().split()
    name = 'two.txt'
    with open(os.path.join(toy_pssl['pssl_root'], name), 'w') as f:
        f.write(f'{rels[0]}\n{rels[5]}\n')
    return dict(toy_pssl, file_list=name)


def _pretrain_config(tmp_path, model, store):
    return _write(tmp_path / f'{model}.yml', {
        '_base_': os.path.join(REPO, 'configs', 'pretrain', f'{model}_pssl.yml'),
        'train_dataset': {
            'imagenet_root': store['imagenet_root'], 'pssl_root': store['pssl_root'],
            'file_list': store['file_list'], 'use_confidence': True,
            'transforms': [{'type': 'Resize', 'target_size': [64, 64]}, {'type': 'Normalize'}]},
    })


from paddle_pssl.utils.vdl import read_scalars as _read_scalars  # noqa: E402


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory, fixed_batch_store):
    """Run each pre-train recipe for 5 iterations; return {model: save_dir}."""
    out = {}
    for model in MODELS:
        tmp = tmp_path_factory.mktemp(model)
        cfg = _pretrain_config(tmp, model, fixed_batch_store)
        save_dir = str(tmp / 'out')
        train_main(['-c', cfg, '--iters', '5', '--batch_size', '2', '--log_iters', '1',
                    '--save_interval', '5', '--use_vdl', '--seed', '0', '--save_dir', save_dir])
        out[model] = save_dir
    return out


@pytest.mark.parametrize('model', MODELS)
def test_pretrain_recipe_runs_and_loss_falls_on_a_fixed_batch(pretrained, model):
    losses = _read_scalars(pretrained[model], 'Train/loss')
    assert len(losses) == 5, losses
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    assert os.path.isfile(os.path.join(pretrained[model], 'iter_5', 'model.pdparams'))


def test_visualdl_log_has_train_loss_and_lr(pretrained):
    save_dir = pretrained['deeplabv3_resnet50_vd']
    assert len(_read_scalars(save_dir, 'Train/loss')) == 5
    assert len(_read_scalars(save_dir, 'Train/lr')) == 5


@pytest.mark.parametrize('model', ['pspnet_resnet50_vd', 'ocrnet_hrnetw18'])
def test_finetune_loads_all_but_the_1001_class_outputs(pretrained, toy_target, tmp_path, model):
    ckpt = os.path.join(pretrained[model], 'iter_5', 'model.pdparams')
    target_ds = {'_inherited_': False, 'type': 'Dataset', 'dataset_root': toy_target['dataset_root'],
                 'num_classes': 3, 'transforms': [{'type': 'Resize', 'target_size': [64, 64]},
                                                  {'type': 'Normalize'}]}
    cfg_path = _write(tmp_path / 'ft.yml', {
        '_base_': os.path.join(REPO, 'configs', 'finetune', f'{model}_voc12aug_pssl.yml'),
        'model': {'num_classes': 3, 'pretrained': ckpt},
        'train_dataset': dict(target_ds, train_path=toy_target['train_path'], mode='train'),
        'val_dataset': dict(target_ds, val_path=toy_target['val_path'], mode='val'),
    })
    from paddleseg.cvlibs import SegBuilder
    finetune_model = SegBuilder(load_config(cfg_path)).model
    saved = paddle.load(ckpt)
    skipped, loaded = [], 0
    for name, value in finetune_model.state_dict().items():
        assert name in saved, name
        if list(saved[name].shape) != list(value.shape):
            skipped.append(name)
        else:
            np.testing.assert_array_equal(saved[name].numpy(), value.numpy())
            loaded += 1
    # exactly the output layers: their 1001-class dimension differs
    assert skipped and all(1001 in saved[n].shape for n in skipped), skipped
    assert {n for n in saved if 1001 in saved[n].shape} == set(skipped)
    assert loaded == len(saved) - len(skipped)
    # and the fine-tune config trains and evaluates on the target set
    save_dir = str(tmp_path / 'ft_out')
    train_main(['-c', cfg_path, '--iters', '2', '--batch_size', '2', '--save_interval', '2',
                '--do_eval', '--use_vdl', '--save_dir', save_dir, '--seed', '0'])
    miou = _read_scalars(save_dir, 'Evaluate/mIoU')
    assert len(miou) == 1 and 0.0 <= miou[0] <= 1.0


def test_a_kill_mid_checkpoint_leaves_no_truncated_file(toy_target, tmp_path, monkeypatch):
    """PaddleSeg's loop saves with plain paddle.save; through the project's
    trainer the save is atomic, so a save that dies half way leaves no file."""
    data = {'dataset_root': toy_target['dataset_root'], 'num_classes': 3}
    cfg = _write(tmp_path / 'ft.yml', {
        '_base_': os.path.join(REPO, 'configs', 'benchmark', 'finetune.yml'),
        'model': {'num_classes': 3},
        'train_dataset': dict(data, train_path=toy_target['train_path']),
        'val_dataset': dict(data, val_path=toy_target['val_path'])})
    real_save = paddle.save

    def dying_save(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        with open(path, 'r+b') as f:       # half the bytes, as when killed mid-write
            f.truncate(os.path.getsize(path) // 2)
        raise KeyboardInterrupt('killed while saving')

    monkeypatch.setattr(paddle, 'save', dying_save)
    save_dir = tmp_path / 'out'
    with pytest.raises(KeyboardInterrupt):
        train_main(['-c', cfg, '--iters', '1', '--batch_size', '2', '--save_interval', '1',
                    '--save_dir', str(save_dir), '--seed', '0'])
    left = [name for _, _, files in os.walk(save_dir) for name in files]
    assert 'model.pdparams' not in left and not any(name.startswith('.tmp_') for name in left), left
    import sys
    assert sys.modules['paddleseg.core.train'].paddle is paddle    # the loop's paddle is restored after the run
