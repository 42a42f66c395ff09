"""Label spaces: one store trains in upstream's 1001 outputs, in the compact
K + 1 and in the class-agnostic 2; the loss's ignore and background follow
the space; a compact checkpoint fine-tunes without its output layer."""
import json
import os

import numpy as np
import paddle
import pytest
import yaml

from paddle_pssl.config import load_config
from paddle_pssl.config.paddleseg import seg_builder
from paddle_pssl.core.pretraining_head import RECORD
from paddle_pssl.datasets.pssl import WeightedPSSLDataset
from paddle_pssl.losses.weighted_ce import PSSLCrossEntropyLoss
from paddle_pssl.pseudo_labels import store
from paddle_pssl.tools_impl import train_main
from paddle_pssl.utils.errors import PSSLError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACES = {'upstream': (1001, 1000, 1001), 'compact': (4, 3, 255), 'objectness': (2, 1, 255)}


def _write(path, dic):
    path.write_text(yaml.safe_dump(dic))
    return str(path)


def _pretrain_cfg(tmp_path, toy_pssl, space, **extra):
    dataset = {'imagenet_root': toy_pssl['imagenet_root'], 'pssl_root': toy_pssl['pssl_root'],
               'transforms': [{'type': 'RandomPaddingCrop', 'crop_size': [96, 96]},
                              {'type': 'Normalize'}]}
    if space is not None:
        dataset['label_space'] = space
    cfg = {'_base_': os.path.join(REPO, 'configs', 'benchmark', 'pretrain_pssl.yml'),
           'train_dataset': dataset}
    for key, value in extra.items():
        cfg.setdefault(key, {}).update(value)
    if space == 'upstream':
        cfg['train_dataset']['transforms'][0]['label_padding_value'] = 1001
    return _write(tmp_path / f'pretrain_{space}.yml', cfg)


@pytest.mark.parametrize('space', list(SPACES))
def test_one_store_in_each_space_labels_and_head(toy_pssl, tmp_path, space):
    outputs, background, ignore = SPACES[space]
    cfg = load_config(_pretrain_cfg(tmp_path, toy_pssl, space))
    builder = seg_builder(cfg)
    model = builder.model
    assert cfg.dic['model']['num_classes'] == outputs
    assert builder.loss['types'][0].ignore_index == ignore
    logits = model(paddle.zeros([1, 3, 48, 48]))[0]
    assert logits.shape[1] == outputs
    dataset = builder.train_dataset
    assert (dataset.num_classes, dataset.background, dataset.ignore_index) == (outputs, background, ignore)
    for idx in range(len(dataset)):
        _, label_path, class_id = dataset.file_list[idx]
        mask, _ = store.read_label(label_path)
        label = np.asarray(dataset[idx]['label']).squeeze()
        # the 72x96 image is padded to 96x96 with the ignore id
        assert label.shape == (96, 96)
        assert (label[72:] == ignore).all()
        expected = {'upstream': class_id, 'compact': class_id, 'objectness': 0}[space]
        np.testing.assert_array_equal(label[:72] == expected, mask == 1)
        assert set(np.unique(label[:72])) <= {expected, background}


def test_one_store_trains_in_both_spaces_and_the_compact_step_is_small(toy_pssl, tmp_path):
    for space in ('upstream', 'compact'):
        save_dir = tmp_path / f'out_{space}'
        train_main(['-c', _pretrain_cfg(tmp_path, toy_pssl, space), '--iters', '2', '--batch_size', '2',
                    '--save_interval', '2', '--seed', '0', '--save_dir', str(save_dir)])
        saved = paddle.load(str(save_dir / 'iter_2' / 'model.pdparams'))
        assert saved['head.decoder.conv.weight'].shape[0] == SPACES[space][0]
        record = save_dir / RECORD
        assert record.is_file() == (space == 'compact')
    record = json.loads((tmp_path / 'out_compact' / RECORD).read_text())
    assert record['label_space'] == 'compact' and record['num_classes'] == 4
    assert record['classes'] == store.read_synsets(os.path.join(toy_pssl['pssl_root'], store.SYNSETS))
    # exactly the parameters whose shape follows num_classes: DeepLabV3+'s classifier conv
    assert sorted(record['output_layer']) == ['head.decoder.conv.bias', 'head.decoder.conv.weight']


def test_upstream_pssldataset_still_reads_the_store(toy_pssl):
    from paddleseg.datasets import PSSLDataset
    from paddleseg.transforms import Normalize
    upstream = PSSLDataset([Normalize()], toy_pssl['imagenet_root'], toy_pssl['pssl_root'])
    ours = WeightedPSSLDataset([Normalize()], toy_pssl['imagenet_root'], toy_pssl['pssl_root'],
                               label_space='compact')
    assert len(upstream) == len(ours)
    for idx in range(len(ours)):
        up, mine = upstream[idx], ours[idx]
        # the same objects; only the background id differs (1000 against K)
        np.testing.assert_array_equal(up['label'] == 1000, mine['label'] == ours.background)
        np.testing.assert_array_equal(np.where(up['label'] == 1000, -1, up['label']),
                                      np.where(mine['label'] == ours.background, -1, mine['label']))


def test_loss_background_is_the_last_output_and_ignore_is_the_spaces():
    paddle.seed(0)
    logits = paddle.randn([1, 4, 2, 3])
    label = paddle.to_tensor([[[0, 3, 255], [2, 3, 1]]], dtype='int64')
    loss = PSSLCrossEntropyLoss(background_weight=0.1, ignore_index=255)
    value = float(loss(logits, label))
    logp = paddle.nn.functional.log_softmax(logits, axis=1).numpy()[0]
    lab = label.numpy()[0]
    num = den = 0.0
    for (i, j), c in np.ndenumerate(lab):
        if c == 255:
            continue
        w = 0.1 if c == 3 else 1.0
        num += -w * logp[c, i, j]
        den += w
    assert value == pytest.approx(num / den, rel=1e-5)


@pytest.mark.parametrize('key, value, says', [
    ('model', {'num_classes': 1001}, 'model.num_classes 1001: the compact label space'),
    ('loss', {'types': [{'type': 'PSSLCrossEntropyLoss', 'background_index': 1000}], 'coef': [1]},
     'background_index 1000'),
    ('loss', {'types': [{'type': 'PSSLCrossEntropyLoss', 'ignore_index': 1001}], 'coef': [1]},
     'ignore_index 1001'),
])
def test_a_value_against_the_space_is_one_line(toy_pssl, tmp_path, key, value, says):
    cfg = load_config(_pretrain_cfg(tmp_path, toy_pssl, 'compact', **{key: value}))
    with pytest.raises(PSSLError, match=says):
        seg_builder(cfg)


def test_a_padding_value_that_is_a_class_is_refused(toy_pssl, tmp_path):
    path = _pretrain_cfg(tmp_path, toy_pssl, 'compact')
    dic = yaml.safe_load(open(path))
    dic['train_dataset']['transforms'][0]['label_padding_value'] = 2
    cfg = load_config(_write(tmp_path / 'pad.yml', dic))
    with pytest.raises(PSSLError, match=r'transforms\[0\].label_padding_value 2: .* ignores 255'):
        seg_builder(cfg)
    # upstream's default padding 255 is a class id there
    dic['train_dataset'].update(label_space='upstream')
    dic['train_dataset']['transforms'][0].pop('label_padding_value')
    with pytest.raises(PSSLError, match='label_padding_value 255: the upstream label space ignores 1001'):
        seg_builder(load_config(_write(tmp_path / 'pad_up.yml', dic)))
    # upstream's 1001 in a compact config stays "ignore"
    dic['train_dataset'].update(label_space='compact')
    dic['train_dataset']['transforms'][0]['label_padding_value'] = 1001
    cfg = load_config(_write(tmp_path / 'pad_1001.yml', dic))
    seg_builder(cfg)
    assert cfg.dic['train_dataset']['transforms'][0]['label_padding_value'] == 255


def test_an_unknown_space_is_one_line(toy_pssl, tmp_path):
    cfg = load_config(_pretrain_cfg(tmp_path, toy_pssl, 'tiny'))
    with pytest.raises(PSSLError, match="'tiny' is not a label space"):
        seg_builder(cfg)


@pytest.fixture(scope='module')
def compact_checkpoint(toy_pssl, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('compact_ckpt')
    save_dir = tmp / 'out'
    train_main(['-c', _pretrain_cfg(tmp, toy_pssl, 'compact'), '--iters', '1', '--batch_size', '2',
                '--save_interval', '1', '--seed', '0', '--save_dir', str(save_dir)])
    return str(save_dir / 'iter_1' / 'model.pdparams')


@pytest.mark.parametrize('target_classes', [3, 4])
def test_a_compact_checkpoint_fine_tunes_without_its_output_layer(compact_checkpoint, toy_target,
                                                                   tmp_path, target_classes):
    """3 target classes: the 4-output layer does not fit; 4: it fits by shape
    but its classes are the source's, so it keeps its random init too."""
    data = {'dataset_root': toy_target['dataset_root'], 'num_classes': target_classes}
    cfg_path = _write(tmp_path / 'ft.yml', {
        '_base_': os.path.join(REPO, 'configs', 'benchmark', 'finetune.yml'),
        'model': {'num_classes': target_classes, 'pretrained': compact_checkpoint},
        'train_dataset': dict(data, train_path=toy_target['train_path']),
        'val_dataset': dict(data, val_path=toy_target['val_path'])})
    saved = paddle.load(compact_checkpoint)
    paddle.seed(0)
    model = seg_builder(load_config(cfg_path)).model
    differs = sorted(name for name, value in model.state_dict().items()
                     if list(value.shape) != list(saved[name].shape)
                     or not np.array_equal(value.numpy(), saved[name].numpy()))
    assert differs == ['head.decoder.conv.bias', 'head.decoder.conv.weight']
    save_dir = tmp_path / 'ft_out'
    train_main(['-c', cfg_path, '--iters', '1', '--batch_size', '2', '--save_interval', '1',
                '--seed', '0', '--save_dir', str(save_dir)])
    assert (save_dir / 'iter_1' / 'model.pdparams').is_file()
