"""Batched evaluation gives the metrics of one image at a time, on a set
whose images come in two sizes (runs of one size are batched, a size change
starts a new batch)."""
import json
import os

import numpy as np
import paddle
import pytest
import yaml

from paddle_pssl.config import load_config
from paddle_pssl.config.paddleseg import seg_builder
from paddle_pssl.core.evaluate import evaluate
from paddle_pssl.datasets import synthetic
from paddle_pssl.tools_impl import val_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def mixed_sizes(tmp_path_factory):
    """A 4-class target set: 7 images of 48 px and 5 of 40 px, interleaved
    unevenly, listed in one val file."""
    root = tmp_path_factory.mktemp('mixed')
    lines = []
    for size, count, seed in ((48, 7, 1), (40, 5, 2)):
        made = synthetic.make_target_set(str(root / f's{size}'), 3, 1, count, size, seed=seed)
        with open(made['test_path']) as f:
            lines.append([' '.join(f's{size}/{p}' for p in line.split()) for line in f])
    order = lines[0][:3] + lines[1][:2] + lines[0][3:] + lines[1][2:]
    (root / 'val.txt').write_text(''.join(f'{line}\n' for line in order))
    data = {'type': 'Dataset', 'dataset_root': str(root), 'num_classes': 4,
            'transforms': [{'type': 'Normalize'}]}
    cfg = root / 'cfg.yml'
    cfg.write_text(yaml.safe_dump({
        '_base_': os.path.join(REPO, 'configs', 'benchmark', 'finetune.yml'),
        'model': {'num_classes': 4},
        'train_dataset': dict(data, train_path=str(root / 'val.txt'), mode='train'),
        'val_dataset': dict(data, val_path=str(root / 'val.txt'), mode='val')}))
    paddle.seed(3)
    builder = seg_builder(load_config(str(cfg)))
    model = builder.model
    weights = str(root / 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    return {'cfg': str(cfg), 'weights': weights, 'model': model, 'dataset': builder.val_dataset}


@pytest.mark.parametrize('batch_size', [2, 4, 16])
def test_batched_metrics_equal_one_image_at_a_time(mixed_sizes, batch_size):
    one = evaluate(mixed_sizes['model'], mixed_sizes['dataset'], batch_size=1, print_detail=False)
    many = evaluate(mixed_sizes['model'], mixed_sizes['dataset'], batch_size=batch_size,
                    print_detail=False)
    assert 0 < one[0] < 1
    for a, b in zip(one, many):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=1e-6, rtol=0)


def test_val_cli_batch_size_writes_the_same_json(mixed_sizes, tmp_path):
    out = {}
    for batch_size in (1, 8):
        path = tmp_path / f'b{batch_size}.json'
        val_main(['-c', mixed_sizes['cfg'], '--model_path', mixed_sizes['weights'],
                  '--batch_size', str(batch_size), '--save_json', str(path)])
        out[batch_size] = json.loads(path.read_text())
    assert out[1]['miou'] == pytest.approx(out[8]['miou'], abs=1e-6)
    np.testing.assert_allclose(out[1]['class_iou'], out[8]['class_iou'], atol=1e-6, rtol=0)


def test_runs_of_one_size_are_batched_and_a_size_change_starts_a_batch(mixed_sizes):
    from paddle_pssl.core.evaluate import _runs
    loader = paddle.io.DataLoader(mixed_sizes['dataset'], batch_size=1, shuffle=False, return_list=True)
    # listed: 3 of 48 px, 2 of 40, 4 of 48, 3 of 40
    assert [len(g) for g in _runs(loader, 4)] == [3, 2, 4, 3]
    assert [len(g) for g in _runs(loader, 2)] == [2, 1, 2, 2, 2, 2, 1]
