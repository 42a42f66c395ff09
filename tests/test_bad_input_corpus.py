"""The bad-input corpus (issue 14, F4 and friends; issue 20: label values,
non-finite losses, weights that fit nothing, classes the classifiers cannot
know, target masks, YAML flow values in --opts, PaddleSeg's consistency
errors; issue 25: earlier runs in save_dir, concurrent runs, weights of
another model in evaluation, prediction and export, unreadable checkpoints,
config keys under the wrong parent): each probe is a config, flag or data
mistake given to a CLI; each must end with exit 2, exactly one ``error:``
line naming the key, flag or file, no traceback, and the output folder
exactly as it was (every file and byte). Cases whose rule is to go on and
say so (0/255 masks in a three-class task, classes no mask holds, a NaN
kappa, PMM labels of one's own classes, a skipped label, bad labels counted,
a huge image) are tests of their own below the probes; the first of those
run in the probes' processes (:data:`GO_ON`).

Every CLI imports Paddle (~8 s), so the probes of a few tools run in one
subprocess (:data:`DRIVER`, :data:`GROUP`), each through the tool's own
``run(main, argv)`` (all that ``tools/<tool>.py`` does) with its own captured
output, under :data:`TIMEOUT`; :func:`test_driver_matches_the_scripts` checks
that the scripts themselves give the same lines.
"""
import glob
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300
MAINS = {'train': ('paddle_pssl.tools_impl', 'train_main', 'tools/train.py'),
         'val': ('paddle_pssl.tools_impl', 'val_main', 'tools/val.py'),
         'convert': ('paddle_pssl.classifiers.convert', 'convert_main', 'tools/convert_cls_to_seg.py'),
         'generate': ('paddle_pssl.tools_impl', 'generate_main', 'tools/generate_pssl.py'),
         'train_cls': ('paddle_pssl.classification', 'train_cls_main', 'tools/train_cls.py'),
         'benchmark': ('paddle_pssl.benchmark.cli', 'benchmark_main', 'tools/benchmark_pssl.py'),
         'predict': ('paddle_pssl.tools_impl', 'predict_main', 'tools/predict.py'),
         'export': ('paddle_pssl.tools_impl', 'export_main', 'tools/export.py')}
# the subprocess a tool's probes run in (default: its own)
GROUP = {'predict': 'val', 'export': 'val', 'convert': 'val'}
# Runs [(id, module, main, argv)] from a JSON file; writes {id: [exit code, output]}.
DRIVER = r'''
import contextlib, importlib, io, json, sys, traceback
import paddle_pssl
from paddle_pssl.utils.cli import run
probes, out = sys.argv[1:3]
results = {}
for pid, module, name, argv in json.load(open(probes)):
    main = getattr(importlib.import_module(module), name)
    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            run(main, argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results[pid] = [code, buf.getvalue()]
json.dump(results, open(out, 'w'))
'''

SENTINEL = 'written before the run\n'


def _write(path, dic):
    path.write_text(yaml.safe_dump(dic))
    return str(path)


# label store defects (issue 20): what a label file holds instead of 0/1 and a confidence in [0, 1]
STORE_DEFECTS = {
    'label_0_255': lambda mask: {'arr_0': mask * 255},
    'label_float': lambda mask: {'arr_0': mask.astype(np.float32)},
    'label_class_id': lambda mask: {'arr_0': mask * 7},
    'confidence_nan': lambda mask: {'arr_0': mask, 'confidence': np.where(
        mask > 0, np.float16(np.nan), np.float16(1)).astype(np.float16)},
}


def _bad_store(toy_pssl, tmp):
    """A copy of the toy store with one file list per defect: a good label,
    then the bad one (batch size 2 meets it in the first batch)."""
    root = tmp / 'pssl'
    shutil.copytree(toy_pssl['pssl_root'], root)
    rels = (root / 'train.txt').read_text().split()
    for k, (kind, arrays) in enumerate(STORE_DEFECTS.items(), 1):
        path = root / rels[k]
        np.savez_compressed(path, **arrays(np.load(path)['arr_0']))
        (root / f'{kind}.txt').write_text(f'{rels[0]}\n{rels[k]}\n')
    return str(root)


def _bad_target(toy_target, tmp):
    """A copy of the toy target set with a label holding class id 7 (3 classes)."""
    from PIL import Image
    root = tmp / 'target'
    shutil.copytree(toy_target['dataset_root'], root)
    first = (root / 'train.txt').read_text().split('\n')[0].split()
    label = np.asarray(Image.open(root / first[1])).copy()
    label[label > 0] = 7
    Image.fromarray(label).save(root / 'labels' / 'bad7.png')
    (root / 'bad7.txt').write_text(f'{first[0]} labels/bad7.png\n' + (root / 'train.txt').read_text())
    return str(root)


def _weights(tmp, target_cfg):
    """A classifier's weights (tools/train_cls.py's kind), a fitting model of
    ``target_cfg`` for val, and a checkpoint of another model for resume."""
    import paddle
    from paddle_pssl.classifiers import build_classifier
    from paddle_pssl.config import load_config
    from paddle_pssl.config.paddleseg import seg_builder
    paddle.save(build_classifier('ResNet18_vd', weights='random', num_classes=3).model.state_dict(),
                str(tmp / 'cls.pdparams'))
    state = seg_builder(load_config(target_cfg)).model.state_dict()
    paddle.save(state, str(tmp / 'target_model.pdparams'))
    # the same model answering class 0 everywhere (a NaN kappa on masks of class 0 alone)
    state['head.decoder.conv.weight'] = paddle.zeros_like(state['head.decoder.conv.weight'])
    state['head.decoder.conv.bias'] = paddle.to_tensor([10.0, 0.0, 0.0])
    paddle.save(state, str(tmp / 'class0_model.pdparams'))
    other = tmp / 'other' / 'iter_5'
    other.mkdir(parents=True)
    paddle.save({'backbone.conv1_1._conv.weight': paddle.zeros([16, 3, 3, 3])}, str(other / 'model.pdparams'))
    paddle.save({}, str(other / 'model.pdopt'))
    return {'cls_weights': str(tmp / 'cls.pdparams'), 'target_weights': str(tmp / 'target_model.pdparams'),
            'class0_weights': str(tmp / 'class0_model.pdparams'), 'other_ckpt': str(other)}


def _own_classes(toy_pssl, tmp):
    """A class-per-folder set named as a new user names it: cat/, coffee/, rocket/."""
    root = tmp / 'own'
    images = sorted(glob.glob(os.path.join(toy_pssl['imagenet_root'], 'train', '*', '*')))
    for name, image in zip(('cat', 'coffee', 'rocket'), images):
        (root / name).mkdir(parents=True)
        shutil.copy(image, root / name / os.path.basename(image))
    return str(root)


def _runs(tmp, train_cfg, target_cfg, target_root, cls_weights):
    """Issue 25's files: a pre-training model (the wrong one to evaluate),
    checkpoint folders whose newest model file is truncated (tools/train.py
    and tools/train_cls.py), an M&M config and a DeepLabV3+ EfficientNet-Lite0
    config of the target set."""
    import paddle
    from paddle_pssl.config import load_config, load_yaml
    from paddle_pssl.config.paddleseg import seg_builder
    from paddle_pssl.utils.safe_load import safe_load
    pretrain = tmp / 'pretrain_model.pdparams'
    paddle.save(seg_builder(load_config(train_cfg)).model.state_dict(), str(pretrain))

    def truncated(root, params, state=None):
        for n in (1, 2):
            folder = root / f'iter_{n}'
            folder.mkdir(parents=True)
            paddle.save(params, str(folder / 'model.pdparams'))
            paddle.save({}, str(folder / 'model.pdopt'))
            if state is not None:
                (folder / 'state.json').write_text(json.dumps(state))
        newest = root / 'iter_2' / 'model.pdparams'
        newest.write_bytes(newest.read_bytes()[:100])   # a kill mid-copy, a full disk
        return str(root / 'iter_2')
    data_keys = lambda mode: {'dataset_root': target_root, f'{mode}_path': f'{target_root}/{mode}.txt',
                              'num_classes': 3}
    lite = load_yaml(os.path.join(REPO, 'configs', '_base_', 'models', 'deeplabv3p_efficientnet_lite0.yml'))
    return {'pretrain_weights': str(pretrain),
            'truncated_ckpt': truncated(tmp / 'ckpt_truncated', safe_load(str(pretrain))),
            'truncated_cls_ckpt': truncated(tmp / 'cls_ckpt_truncated', safe_load(cls_weights), {}),
            'mm': _write(tmp / 'mm.yml', {
                '_base_': os.path.join(REPO, 'configs', 'mm_tuning', 'deeplabv3p_resnet18_vd_benchmark.yml'),
                'model': {'num_classes': 3}, 'train_dataset': data_keys('train'),
                'val_dataset': data_keys('val')}),
            'lite0': _write(tmp / 'lite0.yml', {
                '_base_': target_cfg, 'model': dict(lite['model'], num_classes=3, _inherited_=False)})}


@pytest.fixture(scope='module')
def data(toy_pssl, toy_target, tmp_path_factory):
    """Configs of each tool on the shared toy set, each good but for its probe."""
    tmp = tmp_path_factory.mktemp('corpus')
    train = _write(tmp / 'train.yml', {
        '_base_': os.path.join(REPO, 'configs', 'benchmark', 'pretrain_pssl.yml'),
        'batch_size': 2, 'iters': 2,
        'train_dataset': {'imagenet_root': toy_pssl['imagenet_root'], 'pssl_root': toy_pssl['pssl_root'],
                          'transforms': [{'type': 'Resize', 'target_size': [32, 32]},
                                         {'type': 'Normalize'}]}})
    synsets = tmp / 'synsets.txt'
    synsets.write_text(''.join(f'{n}\n' for n in toy_pssl['class_names']))
    twice = tmp / 'synsets_twice.txt'
    twice.write_text(''.join(f'{n}\n' for n in toy_pssl['class_names'] + toy_pssl['class_names'][:1]))
    generator = {'seed': 0, 'source': {'image_root': toy_pssl['imagenet_root'], 'synsets': str(synsets)},
                 'classifiers': [{'name': 'efficientnet_lite0', 'input_size': 64}],
                 'explainers': {'cam': {}}, 'output': {'batch_size': 4}}
    classifier = _write(tmp / 'cls.yml', {
        '_base_': os.path.join(REPO, 'configs', 'classifiers', 'resnet18_vd_source.yml'),
        'train_dataset': {'image_root': toy_pssl['imagenet_root']}, 'iters': 2, 'batch_size': 2})
    target_root = _bad_target(toy_target, tmp)
    target = _write(tmp / 'target.yml', {
        '_base_': os.path.join(REPO, 'configs', 'benchmark', 'finetune.yml'),
        'batch_size': 2, 'iters': 2, 'model': {'num_classes': 3},
        'train_dataset': {'dataset_root': target_root, 'train_path': f'{target_root}/train.txt',
                          'num_classes': 3},
        'val_dataset': {'dataset_root': target_root, 'val_path': f'{target_root}/val.txt',
                        'num_classes': 3}})
    weights = _weights(tmp, target)
    return dict({'tmp': tmp, 'train': train, 'generator': generator, 'synsets_twice': str(twice),
                 'classifier': classifier, 'store': _bad_store(toy_pssl, tmp), 'target': target,
                 'target_root': target_root, 'own': _own_classes(toy_pssl, tmp)},
                **weights, **_runs(tmp, train, target, target_root, weights['cls_weights']))


def _store_probe(kind):
    return lambda d, o: ['-c', d['train'], '-o', f"train_dataset.pssl_root={d['store']}",
                         f'train_dataset.file_list={kind}.txt', 'train_dataset.use_confidence=True']


def _train_yml(data, name, **changes):
    return ['-c', _write(data['tmp'] / f'{name}.yml', dict({'_base_': data['train']}, **changes))]


def _gen_yml(data, name, out, **changes):
    dic = json.loads(json.dumps(data['generator']))
    dic['output']['pssl_root'] = out
    for key, value in changes.items():
        node = dic
        *parents, last = key.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return ['-c', _write(data['tmp'] / f'{name}.yml', dic)]


def _earlier_run(folder, *names):
    """Files an earlier run left in ``folder``: checkpoint folders (with both
    model files) and plain files."""
    for name in names:
        if name.startswith('iter_'):
            os.makedirs(os.path.join(folder, name))
            for part in ('model.pdparams', 'model.pdopt'):
                with open(os.path.join(folder, name, part), 'w') as f:
                    f.write(f'{name} of an earlier run\n')
        else:
            with open(os.path.join(folder, name), 'w') as f:
                f.write('an earlier run\n')
    return folder


def _live_lock(folder):
    """The lock of a run in progress on this host: pid 1 is alive and older than the lock."""
    with open(os.path.join(folder, '.run.lock'), 'w') as f:
        json.dump({'pid': 1, 'host': socket.gethostname(), 'started': 'just now',
                   'started_at': time.time()}, f)
    return folder


# (id, tool, argv(data, out folder), what the error line must contain)
PROBES = [
    # F4: types and ranges, top level and flags
    ('iters_word', 'train', lambda d, o: _train_yml(d, 'iters_word', iters='ten'),
     "iters 'ten': must be an integer"),
    ('seed_word', 'train', lambda d, o: _train_yml(d, 'seed_word', seed='abc'),
     "seed 'abc': must be an integer"),
    ('batch_size_0', 'train', lambda d, o: _train_yml(d, 'bs0', batch_size=0), 'batch_size 0: must be >= 1'),
    ('iters_flag_negative', 'train', lambda d, o: ['-c', d['train'], '--iters', '-3'],
     '--iters -3: must be an integer >= 1'),
    ('iters_flag_0', 'train', lambda d, o: ['-c', d['train'], '--iters', '0'],
     '--iters 0: must be an integer >= 1'),
    ('save_interval_0', 'train', lambda d, o: ['-c', d['train'], '--save_interval', '0'],
     '--save_interval 0: must be an integer >= 1'),
    ('log_iters_0', 'train', lambda d, o: ['-c', d['train'], '--log_iters', '0'],
     '--log_iters 0: must be an integer >= 1'),
    ('num_workers_negative', 'train', lambda d, o: ['-c', d['train'], '--num_workers', '-1'],
     '--num_workers -1: must be an integer >= 0'),
    ('keep_checkpoint_max_negative', 'train',
     lambda d, o: ['-c', d['train'], '--keep_checkpoint_max', '-2'],
     '--keep_checkpoint_max -2: must be an integer >= 0'),
    # F4: unknown types
    ('lr_scheduler_type', 'train', lambda d, o: _train_yml(d, 'lrs', lr_scheduler={
        'type': 'PolyDecay', 'learning_rate': 0.01}),
     "lr_scheduler.type 'PolyDecay' is not a scheduler of paddle.optimizer.lr (did you mean "
     "'PolynomialDecay'?)"),
    ('optimizer_type', 'train', lambda d, o: _train_yml(d, 'opt', optimizer={'type': 'SDG'}),
     "optimizer.type 'SDG' is not an optimizer (did you mean 'SGD'?)"),
    # F4: _base_
    ('base_missing', 'train', lambda d, o: _train_yml(d, 'base_missing', _base_='nope.yml'),
     "_base_ 'nope.yml' not found"),
    ('base_circular', 'train', lambda d, o: _train_yml(d, 'loop', _base_='loop.yml'),
     'circular _base_ (loop.yml -> loop.yml)'),
    # F4: misspelled nested keys, named by key path
    ('backbone_key', 'train', lambda d, o: ['-c', d['train'], '-o', 'model.backbone.pretraind=x'],
     "model.backbone.pretraind: unknown argument of ResNet18_vd (did you mean 'pretrained'?)"),
    ('dataset_key', 'train', lambda d, o: ['-c', d['train'], '-o', 'train_dataset.pssl_rot=x'],
     "train_dataset.pssl_rot: unknown argument of WeightedPSSLDataset (did you mean 'pssl_root'?)"),
    ('transform_key', 'train', lambda d, o: _train_yml(d, 'tk', train_dataset={'transforms': [
        {'type': 'Resize', 'target_sise': [32, 32]}, {'type': 'Normalize'}]}),
     "train_dataset.transforms[0].target_sise: unknown argument of Resize (did you mean 'target_size'?)"),
    ('loss_key', 'train', lambda d, o: _train_yml(d, 'lk', loss={'types': [
        {'type': 'PSSLCrossEntropyLoss', 'background_wieght': 0.1}], 'coef': [1]}),
     "loss.types[0].background_wieght: unknown argument of PSSLCrossEntropyLoss"),
    ('lr_scheduler_key', 'train', lambda d, o: ['-c', d['train'], '-o', 'lr_scheduler.end_l=0'],
     "lr_scheduler.end_l: unknown argument of PolynomialDecay (did you mean 'end_lr'?)"),
    # F4: explainer options, checked before any model or the store is touched
    ('smoothgrad_n_samples', 'generate',
     lambda d, o: _gen_yml(d, 'sg', o, explainers={'smoothgrad': {'n_samples': -1}}),
     'explainers.smoothgrad.n_samples -1: must be an integer >= 1'),
    ('lime_num_samples', 'generate',
     lambda d, o: _gen_yml(d, 'l0', o, explainers={'lime': {'num_samples': 0}}),
     'explainers.lime.num_samples 0: must be an integer >= 1'),
    ('lime_unknown_option', 'generate',
     lambda d, o: _gen_yml(d, 'lu', o, explainers={'lime': {'n_samples': 20}}),
     "explainers.lime.n_samples: unknown option of lime (did you mean 'num_samples'?)"),
    ('unknown_explainer', 'generate', lambda d, o: _gen_yml(d, 'ue', o, explainers=['cam', 'gradkam']),
     "explainers.gradkam: unknown explainer (did you mean 'gradcam'?)"),
    ('generator_nested_key', 'generate',
     lambda d, o: _gen_yml(d, 'gk', o, **{'consensus.treshold': 'mean'}),
     "unknown key 'consensus.treshold' (did you mean 'threshold'?)"),
    ('max_images_0', 'generate', lambda d, o: _gen_yml(d, 'mi', o) + ['--max_images', '0'],
     '--max_images 0: must be an integer >= 1'),
    # F4: a class listed twice in synsets would shift every later class id
    ('synsets_twice', 'generate', lambda d, o: _gen_yml(d, 'st', o, **{'source.synsets': d['synsets_twice']}),
     'class names listed twice'),
    ('cls_iters_word', 'train_cls',
     lambda d, o: ['-c', d['classifier'], '--save_dir', o, '-o', 'iters=ten'], "iters 'ten': must be an integer"),
    ('cls_lr_negative', 'train_cls',
     lambda d, o: ['-c', d['classifier'], '--save_dir', o, '-o', 'optimizer.lr=-1'],
     'optimizer.lr -1: must be >= 0'),
    ('benchmark_scale', 'benchmark', lambda d, o: ['--out', o, '-o', 'scale=0'], 'scale 0: must be > 0'),
    # issue 20: label files the dataset reads (upstream's reader trains them all as background)
    ('label_0_255', 'train', _store_probe('label_0_255'),
     '_eiseg.npz: arr_0 holds the value 255; expected only 0 (background) and 1 (object) (a 0/255 mask?'),
    ('label_float', 'train', _store_probe('label_float'), '_eiseg.npz: arr_0 has dtype float32'),
    ('label_class_id', 'train', _store_probe('label_class_id'), '_eiseg.npz: arr_0 holds the value 7'),
    ('confidence_nan', 'train', _store_probe('confidence_nan'),
     '_eiseg.npz: confidence holds nan ('),
    # issue 20: a non-finite loss stops at its iteration, naming the batch
    ('loss_nan', 'train', lambda d, o: ['-c', d['train'], '--iters', '6', '-o',
                                        'lr_scheduler.learning_rate=1e30'],
     '; lower the learning rate, or set on_nonfinite_loss: skip to leave such batches out; run '
     'stopped, no checkpoint was saved yet'),
    ('cls_loss_nan', 'train_cls',
     lambda d, o: ['-c', d['classifier'], '--save_dir', o, '-o', 'optimizer.lr=1e30', 'iters=6'],
     '; lower the learning rate, or set on_nonfinite_loss: skip'),
    ('on_nonfinite_loss_word', 'train', lambda d, o: ['-c', d['train'], '-o', 'on_nonfinite_loss=skp'],
     "on_nonfinite_loss 'skp': must be one of 'stop', 'skip'"),
    # issue 20: weights that do not fit the model
    ('resume_other_model', 'train', lambda d, o: ['-c', d['train'], '--resume_model', d['other_ckpt']],
     '--resume_model does not fit DeepLabV3P: backbone.conv1_1._conv.weight is [16, 3, 3, 3] in '
     'the file, [32, 3, 3, 3] in the model'),
    ('classifier_as_backbone', 'train',
     lambda d, o: ['-c', d['train'], '-o', f"model.backbone.pretrained={d['cls_weights']}"],
     'as backbone.pretrained it fits 0 of the 115 parameters of ResNet_vd, so it would train from '
     'random weights; first: conv1_1._conv.weight [32, 3, 3, 3] is not in the file'),
    ('convert_other_architecture', 'convert',
     lambda d, o: ['--weights', d['cls_weights'], '--backbone', 'ResNet34_vd', '--out', f'{o}/x.pdparams'],
     'classifier has 115 backbone tensors, ResNet_vd has 195: not the same architecture'),
    ('convert_unknown_backbone', 'convert',
     lambda d, o: ['--weights', d['cls_weights'], '--backbone', 'Resnet18_vd', '--out', f'{o}/x.pdparams'],
     "--backbone 'Resnet18_vd' is not a PaddleSeg backbone (did you mean 'ResNet18_vd'?)"),
    # issue 20: classifiers that cannot know the source's classes
    ('imagenet_classifier_own_classes', 'generate',
     lambda d, o: _gen_yml(d, 'own', o, **{'source.image_root': d['own'], 'source.synsets': None}),
     'classifiers.0 (efficientnet_lite0) explains the 1000 ImageNet classes, but the source has 3 '
     'classes (cat, coffee, rocket) without ImageNet ids: give the 1000 ImageNet wnids in source.synsets'),
    ('classifier_outputs', 'generate',
     lambda d, o: _gen_yml(d, 'k5', o, classifiers=[{'name': 'efficientnet_lite0', 'num_classes': 5}]),
     'classifiers.0 (efficientnet_lite0) has 5 outputs, the source has 3 classes'),
    # issue 20: target masks of fine-tuning and evaluation
    ('target_label_value', 'train',
     lambda d, o: ['-c', d['target'], '-o', f"train_dataset.train_path={d['target_root']}/bad7.txt"],
     'bad7.png: label value 7 is not a class id: num_classes is 3 (ids 0-2) and ignore_index 255'),
    ('val_label_value', 'val',
     lambda d, o: ['-c', d['target'], '--model_path', d['target_weights'], '-o',
                   f"val_dataset.val_path={d['target_root']}/bad7.txt"],
     'bad7.png: label value 7 is not a class id'),
    # issue 20: config mistakes PaddleSeg reports in other words
    ('opts_flow_list', 'train',
     lambda d, o: ['-c', d['train'], '-o', 'train_dataset.transforms=[{type: Resize, target_sise: [32, 32]}]'],
     "train_dataset.transforms[0].target_sise: unknown argument of Resize (did you mean 'target_size'?)"),
    ('opts_flow_broken', 'train',
     lambda d, o: ['-c', d['train'], '-o', 'train_dataset.transforms=[{type: Resize'],
     "--opts train_dataset.transforms: '[{type: Resize' is not a valid YAML list or mapping"),
    ('losses_vs_outputs', 'train',
     lambda d, o: ['-c', d['train'], '-o', 'loss.types=[{type: PSSLCrossEntropyLoss}, '
                   '{type: PSSLCrossEntropyLoss}]', 'loss.coef=[1, 0.4]'],
     'loss.types and loss.coef give 2 loss(es), the model returns 1 output(s)'),
    ('dataset_field_missing', 'train', lambda d, o: ['-c', d['target'], '-o', 'train_dataset.train_path=null'],
     'train_dataset.train_path: required by Dataset (mode train), not given'),
    # issue 25: a fresh run never deletes an earlier one (train.py, its M&M stage, train_cls.py)
    ('earlier_run', 'train', lambda d, o: ['-c', d['target']] if _earlier_run(o, 'iter_2', 'iter_4') else [],
     'holds an earlier run (iter_2, iter_4); to continue it pass --resume_model {o}/iter_4, to keep it '
     'choose another --save_dir, to delete it pass --overwrite'),
    ('mm_earlier_run', 'train', lambda d, o: ['-c', d['mm']] if _earlier_run(o, 'iter_3', 'best_model') else [],
     'holds an earlier run (iter_3, best_model); to continue it pass --resume_model {o}/iter_3'),
    ('cls_earlier_run', 'train_cls',
     lambda d, o: ['-c', d['classifier'], '--save_dir', _earlier_run(o, 'model.pdparams', 'train_cls.json')],
     'holds an earlier run (model.pdparams, train_cls.json); to keep it choose another --save_dir, '
     'to delete it pass --overwrite'),
    ('resume_into_another_run', 'train',
     lambda d, o: ['-c', d['target'], '--resume_model', d['other_ckpt']] if _earlier_run(o, 'iter_2') else [],
     'holds another run (iter_2) than the one --resume_model'),
    # issue 25: one run per save_dir
    ('concurrent_run', 'train', lambda d, o: ['-c', d['target']] if _live_lock(o) else [],
     '.run.lock: another run is writing to this save_dir: pid 1 on '),
    ('mm_concurrent_run', 'train', lambda d, o: ['-c', d['mm']] if _live_lock(o) else [],
     '.run.lock: another run is writing to this save_dir: pid 1 on '),
    ('cls_concurrent_run', 'train_cls', lambda d, o: ['-c', d['classifier'], '--save_dir', _live_lock(o)],
     '.run.lock: another run is writing to this save_dir: pid 1 on '),
    # issue 25: evaluation, prediction and export take the trained model, every parameter of it
    ('val_pretraining_checkpoint', 'val', lambda d, o: ['-c', d['target'], '--model_path', d['pretrain_weights']],
     'pretrain_model.pdparams: --model_path does not fit DeepLabV3P: head.decoder.conv.weight is '
     '[4, 256, 1, 1] in the file, [3, 256, 1, 1] in the model; 198 of 200 parameters fit'),
    ('predict_pretraining_checkpoint', 'predict',
     lambda d, o: ['-c', d['target'], '--model_path', d['pretrain_weights'], '--image_path',
                   os.path.join(d['target_root'], 'images'), '--save_dir', o],
     'pretrain_model.pdparams: --model_path does not fit DeepLabV3P: head.decoder.conv.weight is '
     '[4, 256, 1, 1] in the file'),
    ('export_pretraining_checkpoint', 'export',
     lambda d, o: ['-c', d['target'], '--model_path', d['pretrain_weights'], '--save_dir', o],
     'pretrain_model.pdparams: --model_path does not fit DeepLabV3P: head.decoder.conv.weight is '
     '[4, 256, 1, 1] in the file'),
    ('val_other_backbone', 'val', lambda d, o: ['-c', d['lite0'], '--model_path', d['target_weights']],
     'target_model.pdparams: --model_path does not fit DeepLabV3P: backbone._conv_stem.weight [32, 3, 3, 3] '
     'is not in the file'),
    # issue 25: an unreadable newest checkpoint names the newest whole one
    ('resume_truncated', 'train', lambda d, o: ['-c', d['train'], '--resume_model', d['truncated_ckpt']],
     'ckpt_truncated/iter_2/model.pdparams: not a readable Paddle weights file ('),
    ('cls_resume_truncated', 'train_cls',
     lambda d, o: ['-c', d['classifier'], '--save_dir', o, '--resume', d['truncated_cls_ckpt']],
     'cls_ckpt_truncated/iter_2/model.pdparams: not a readable Paddle weights file ('),
    # issue 25: a block under the wrong parent is refused with its place
    ('transforms_under_loss', 'train', lambda d, o: _train_yml(d, 'tul', loss={'transforms': [
        {'type': 'Resize', 'target_size': [48, 48]}, {'type': 'Normalize'}]}),
     'loss.transforms: not a key of loss; did you mean train_dataset.transforms?'),
    ('coef_under_model', 'train', lambda d, o: ['-c', d['train'], '-o', 'model.coef=[1]'],
     'model.coef: unknown argument of DeepLabV3P; did you mean loss.coef?'),
    ('transforms_top_level', 'train', lambda d, o: _train_yml(d, 'ttl', transforms=[{'type': 'Normalize'}]),
     "unknown top-level key 'transforms'; did you mean train_dataset.transforms?"),
    ('test_config_key', 'val',
     lambda d, o: ['-c', _write(d['tmp'] / 'tc.yml', {'_base_': d['target'], 'test_config': {'num_classes': 3}}),
                   '--model_path', d['target_weights']],
     'test_config.num_classes: not a key of test_config; did you mean train_dataset.num_classes?'),
    ('generator_misplaced_key', 'generate', lambda d, o: _gen_yml(d, 'gm', o, **{'source.batch_size': 2}),
     "unknown key 'source.batch_size'; did you mean output.batch_size?"),
    ('cls_misplaced_key', 'train_cls',
     lambda d, o: ['-c', d['classifier'], '--save_dir', o, '-o', 'train_dataset.lr=0.1'],
     "unknown key 'train_dataset.lr'; did you mean optimizer.lr?"),
]
PROBE_IDS = [p[0] for p in PROBES]


def _masks_0_255(data):
    """The target set with its masks saved as 0/255, three classes."""
    from PIL import Image
    root = data['tmp'] / 'masks_0_255'
    if not root.exists():
        shutil.copytree(data['target_root'], root)
        for path in glob.glob(str(root / 'labels' / '*.png')):
            label = np.asarray(Image.open(path))
            Image.fromarray(((label > 0) * 255).astype(np.uint8)).save(path)
    return _write(data['tmp'] / 'masks_0_255.yml', {
        '_base_': data['target'],
        'train_dataset': {'dataset_root': str(root), 'train_path': str(root / 'train.txt')},
        'val_dataset': {'dataset_root': str(root), 'val_path': str(root / 'val.txt')}})


def _four_classes(data):
    """num_classes 4 (the example's) on masks holding 0..2."""
    return ['-c', data['target'], '-o', 'model.num_classes=4', 'train_dataset.num_classes=4',
            'val_dataset.num_classes=4']


# Cases whose rule is to go on and say so, run in the probes' processes:
# (id, tool, argv(data, out folder)); their tests are below the probes'.
GO_ON = [
    ('masks_0_255_train', 'train', lambda d, o: ['-c', _masks_0_255(d), '--do_eval']),
    ('masks_0_255_val', 'val', lambda d, o: ['-c', _masks_0_255(d), '--model_path', d['class0_weights'],
                                             '--save_json', os.path.join(o, 'metrics.json')]),
    ('classes_no_mask_holds', 'train', lambda d, o: _four_classes(d) + ['--do_eval', '--log_iters', '1']),
    ('pmm_own_classes', 'generate', lambda d, o: ['-c', _write(d['tmp'] / 'pmm_own.yml', {
        '_base_': os.path.join(REPO, 'configs', 'recipes', 'pseudo_labels_pmm.yml'),
        'source': {'image_root': d['own']},
        'classifiers': [{'name': 'ResNet18_vd', 'weights': d['cls_weights'], 'num_classes': 3,
                         'input_size': 64, 'output_stride': 32}],
        'output': {'pssl_root': os.path.join(o, 'labels_pmm')}}), '--no_progress']),
]


def _out_folder(data, pid):
    out = data['tmp'] / 'out' / pid
    out.mkdir(parents=True, exist_ok=True)
    (out / 'keep.txt').write_text(SENTINEL)
    return str(out)


def _snapshot(folder):
    """{path under ``folder``: sha256 of its bytes, or '/' for a folder}."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder)] = '/'
        for name in files:
            with open(os.path.join(root, name), 'rb') as f:
                found[os.path.relpath(os.path.join(root, name), folder)] = \
                    hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture(scope='module')
def results(data):
    """{probe id: (exit code, output)}, one subprocess per group of tools;
    ``data['before']``: each probe's output folder as the probe found it."""
    by_group, data['before'] = {}, {}
    for pid, tool, argv in [p[:3] for p in PROBES] + GO_ON:
        out = _out_folder(data, pid)
        args = argv(data, out)
        if tool == 'train':
            args += ['--save_dir', out]
        data['before'][pid] = _snapshot(out)
        module, name, _ = MAINS[tool]
        by_group.setdefault(GROUP.get(tool, tool), []).append((pid, module, name, args))
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop('PSSL_DEBUG', None)
    procs = []
    for group, probes in by_group.items():
        listing, out = data['tmp'] / f'{group}.json', data['tmp'] / f'{group}.out.json'
        listing.write_text(json.dumps(probes))
        procs.append((subprocess.Popen([sys.executable, '-c', DRIVER, str(listing), str(out)],
                                       env=env, cwd=str(data['tmp']), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True), out))
    found = {}
    for proc, out in procs:
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err[-3000:]
        found.update(json.loads(out.read_text()))
    return found


def _one_error(code, output):
    errors = [line for line in output.splitlines() if line.startswith('error:')]
    assert code == 2, output[-3000:]
    assert 'Traceback' not in output, output[-3000:]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize('pid, tool, argv, needle', PROBES, ids=PROBE_IDS)
def test_probe_is_one_line_exit_2_and_nothing_lost(results, data, pid, tool, argv, needle):
    error = _one_error(*results[pid])
    out = data['tmp'] / 'out' / pid
    assert needle.replace('{o}', str(out)) in error, error
    assert '\n' not in error and len(error) < 600, error   # no config dump
    assert _snapshot(out) == data['before'][pid]           # every file and byte as it was
    assert (out / 'keep.txt').read_text() == SENTINEL


@pytest.mark.parametrize('pid, batch', [('loss_nan', r'/train/n\d+/n\d+_\d+\.JPEG_eiseg\.npz'),
                                        ('cls_loss_nan', r'train/n\d+/n\d+_\d+\.JPEG')])
def test_a_nonfinite_loss_names_its_iteration_and_batch(results, pid, batch):
    import re
    error = _one_error(*results[pid])
    assert re.search(rf'error: iter \d+: the loss is (nan|inf|-inf) \(batch: \S*{batch}, ', error), error


def test_driver_matches_the_scripts(data):
    """The real scripts give the same single line (one probe per tool)."""
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop('PSSL_DEBUG', None)
    picks = ('dataset_key', 'lime_unknown_option')
    for pid, tool, argv, needle in [p for p in PROBES if p[0] in picks]:
        out = _out_folder(data, pid + '_script')
        args = argv(data, out) + (['--save_dir', out] if tool == 'train' else [])
        result = subprocess.run([sys.executable, os.path.join(REPO, MAINS[tool][2]), *args],
                                capture_output=True, text=True, timeout=TIMEOUT, env=env,
                                cwd=str(data['tmp']))
        assert needle in _one_error(result.returncode, result.stdout + result.stderr)


def test_written_files_honour_the_umask(tmp_path):
    """Labels, text, weights and checkpoints: 0666/0777 minus the umask (F9)."""
    import numpy as np
    import paddle
    from paddle_pssl.pseudo_labels import store
    from paddle_pssl.utils.checkpoint import Checkpoints
    from paddle_pssl.utils.io import atomic_paddle_save, atomic_write_text

    params = {'w': paddle.ones([2, 2])}
    for umask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700)):
        root = tmp_path / oct(umask)
        old = os.umask(umask)
        try:
            store.write_label(str(root / 'a.JPEG_eiseg.npz'), np.ones((4, 4), np.uint8))
            atomic_write_text(str(root / 'train.txt'), 'a\n')
            atomic_paddle_save(params, str(root / 'model.pdparams'))
            folder = Checkpoints(str(root / 'ckpt')).save(1, params, {'lr': 0.1})
        finally:
            os.umask(old)
        for name in ('a.JPEG_eiseg.npz', 'train.txt', 'model.pdparams'):
            assert stat.S_IMODE(os.stat(root / name).st_mode) == file_mode, (umask, name)
        assert stat.S_IMODE(os.stat(folder).st_mode) == dir_mode, umask
        for name in os.listdir(folder):
            assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == file_mode, (umask, name)


# ---- issue 20: the cases whose rule is to go on, and say so ----------------------------------

def _cli(tool, *argv, env_extra=None, timeout=TIMEOUT, preexec_fn=None):
    env = dict(os.environ, PYTHONPATH=REPO, **(env_extra or {}))
    env.pop('PSSL_DEBUG', None)
    result = subprocess.run([sys.executable, os.path.join(REPO, MAINS[tool][2]), *argv],
                            capture_output=True, text=True, timeout=timeout, env=env,
                            preexec_fn=preexec_fn)
    return result.returncode, result.stdout + result.stderr


def test_skip_mode_skips_and_counts_a_bad_label(data, tmp_path):
    code, out = _cli('train', '--save_dir', str(tmp_path), '--log_iters', '1',
                     *_store_probe('label_0_255')(data, None), 'train_dataset.on_bad_sample=skip')
    assert code == 0 and 'Traceback' not in out, out[-3000:]
    skipped = [line for line in out.splitlines() if 'skipped: ' in line]
    assert len(skipped) == 1 and 'arr_0 holds the value 255' in skipped[0], skipped
    assert '(1 bad sample(s) skipped so far)' in skipped[0]
    assert 'iter: 2/2' in out


def _went_on(results, pid):
    code, output = results[pid]
    assert code == 0 and 'Traceback' not in output and 'error:' not in output, output[-3000:]
    return output


def _lines(output, needle):
    return [line for line in output.splitlines() if needle in line]


def test_masks_of_0_and_255_warn_once_in_any_task(results, data):
    """Three classes (0, 1, 2) saved as 0/255: train and val go on, each
    saying it once, naming a file."""
    for pid in ('masks_0_255_train', 'masks_0_255_val'):
        warned = _lines(_went_on(results, pid), '255 is the ignore index')
        assert len(warned) == 1, (pid, warned)
        assert f"{data['tmp']}/masks_0_255/labels/" in warned[0] and 'hold only 0 and 255' in warned[0]
        assert "save each pixel's class id (0-2)" in warned[0]


def test_a_nan_kappa_is_null_with_its_reason_in_valid_json(results, data):
    """Such masks give PaddleSeg's Kappa nan; the metrics file holds null, the
    reason beside it, parses as strict JSON, and the log says so."""
    output = _went_on(results, 'masks_0_255_val')
    assert 'Kappa: nan' in output      # PaddleSeg's own log line
    text = (data['tmp'] / 'out' / 'masks_0_255_val' / 'metrics.json').read_text()

    def no_constants(name):
        raise AssertionError(f'{name} in a metrics file')
    metrics = json.loads(text, parse_constant=no_constants)
    assert metrics['kappa'] is None and metrics['acc'] == 1.0
    assert 'chance is 1' in metrics['null_reasons']['kappa']
    said = _lines(output, 'metrics.json: kappa is undefined (')
    assert len(said) == 1 and said[0].endswith('written as null'), said


def test_classes_no_mask_holds_are_named_before_training(results):
    """num_classes 4 on masks of 0..2: one line names class 3, before the
    first iteration; training goes on."""
    output = _went_on(results, 'classes_no_mask_holds')
    warned = _lines(output, 'occurs in no ')
    assert len(warned) == 1, warned
    assert ('class id 3 of num_classes 4 occurs in no training or validation mask (6 read): mIoU '
            'averages over it as IoU 0; if the task has 3 classes, set num_classes: 3') in warned[0]
    assert output.index(warned[0]) < output.index('[TRAIN] epoch')


def test_pmm_labels_of_ones_own_classes(results, data):
    """configs/recipes/pseudo_labels_pmm.yml labels a folder of one's own
    classes (configs/pmm/ needs ImageNet's wnids)."""
    output = _went_on(results, 'pmm_own_classes')
    assert 'written 3, already there 0, skipped 0' in output, output[-2000:]
    root = data['tmp'] / 'out' / 'pmm_own_classes' / 'labels_pmm'
    settings = json.loads((root / 'fingerprint.json').read_text())['settings']
    assert settings['consensus']['postprocess'] == 'pmm'
    from paddle_pssl.pseudo_labels import store
    labels, names = store.list_labels(str(root))
    assert names == ['cat', 'coffee', 'rocket'] and len(labels) == 3


def test_lite0_says_what_it_loaded(results):
    """The EfficientNet-Lite0 backbone names the ImageNet weights it loaded
    (here in the log of a probe that builds it)."""
    code, output = results['val_other_backbone']
    assert _lines(output, 'EfficientNetLite0: 240/240 ImageNet parameters from ')
    assert _lines(output, 'efficientnet-lite0-57934424.pth')


def test_bad_labels_are_counted_by_eval_and_the_inspector(data, toy_pssl, tmp_path, capsys):
    """eval_pseudo_labels and the inspector count the store's bad files and go on."""
    from PIL import Image
    from paddle_pssl.pseudo_labels import store
    from paddle_pssl.pseudo_labels.inspect import inspect_store
    from paddle_pssl.tools_impl import eval_labels_main
    gt = tmp_path / 'gt'
    for rel, _, _ in store.list_labels(toy_pssl['pssl_root'])[0]:
        mask = store.read_label(os.path.join(toy_pssl['pssl_root'], rel))[0]
        path = gt / (os.path.splitext(store.image_relpath(rel))[0] + '.png')
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask * 255).save(path)
    result = eval_labels_main(['--pssl_root', data['store'], '--gt_root', str(gt)])
    assert len(result['bad_labels']) == len(STORE_DEFECTS) and result['miou'] == 1.0, result
    assert f'bad label files left out: {len(STORE_DEFECTS)}, first: ' in capsys.readouterr().out
    stats = inspect_store(data['store'], toy_pssl['imagenet_root'], num=16, out=str(tmp_path / 'inspect'))
    assert stats['bad_labels']['count'] == len(STORE_DEFECTS), stats['bad_labels']
    assert 'bad label files: 4 of those opened' in capsys.readouterr().out


def test_a_nonfinite_batch_is_skipped_and_moves_no_weight(data, tmp_path, capsys):
    """on_nonfinite_loss: skip in PaddleSeg's loop: the batch with a NaN pixel
    weight (made here past the label checks) is left out and counted; the
    checkpoint after it equals the one before; the rest trains."""
    import paddle
    from paddle_pssl.config import load_config
    from paddle_pssl.config.paddleseg import seg_builder
    from paddle_pssl.core import train
    cfg = load_config(data['train'], iters=3, opts=['train_dataset.use_confidence=True'])
    paddle.seed(0)
    builder = seg_builder(cfg)
    dataset, calls = builder.train_dataset, []
    sample = dataset._sample

    def third_is_nan(image, label, confidence):
        calls.append(1)
        out = sample(image, label, confidence)
        if len(calls) == 3:   # the reader goes in order: batch 2 of batch size 2
            out['weight'] = np.full_like(out['weight'], np.nan)
        return out
    dataset._sample = third_is_nan
    train(builder.model, dataset, optimizer=builder.optimizer, losses=builder.loss, iters=3,
          batch_size=2, save_interval=1, log_iters=1, save_dir=str(tmp_path), num_workers=0,
          keep_checkpoint_max=0, on_nonfinite_loss='skip')
    out = capsys.readouterr().out
    assert 'iter 2: the loss is nan (batch: ' in out and 'batch skipped (1 so far' in out, out[-2000:]
    assert '1 batch(es) skipped for a non-finite loss' in out
    first, second, third = (paddle.load(str(tmp_path / f'iter_{i}' / 'model.pdparams')) for i in (1, 2, 3))
    # parameters only: the forward pass still updates batch-norm statistics
    params = [name for name, p in builder.model.named_parameters() if not p.stop_gradient]
    assert all(np.array_equal(first[k].numpy(), second[k].numpy()) for k in params)
    assert any(not np.array_equal(second[k].numpy(), third[k].numpy()) for k in params)
    assert all(np.isfinite(v.numpy()).all() for v in third.values())


HUGE = (10000, 15000)        # 150 megapixels, a 0.5 MB PNG
ADDRESS_SPACE_BUDGET = 1400  # MiB above the process's size once the generator is built
LIMITED = r'''
import resource, sys
import paddle_pssl
from paddle_pssl.tools_impl import generate_main
from paddle_pssl.utils.cli import run
import paddle_pssl.pseudo_labels.generate as generate
build = generate.PseudoLabelGenerator.__init__
def limited(self, *args, **kwargs):
    build(self, *args, **kwargs)
    size = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]) * 1024
    limit = size + int(sys.argv[1]) * 2 ** 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
generate.PseudoLabelGenerator.__init__ = limited
run(generate_main, sys.argv[2:])
'''


def _huge_source(tmp_path):
    """A 150-megapixel photo first in a batch with two ordinary ones (1000 wnids)."""
    import cv2
    import skimage.data
    from conftest import write_photo_source
    source = write_photo_source(tmp_path / 'src', [(967, k, cv2.resize(skimage.data.coffee(), (96, 64)))
                                                   for k in (1, 2)])
    image = np.full(HUGE + (3,), 200, np.uint8)
    cv2.rectangle(image, (HUGE[1] // 4, HUGE[0] // 4), (3 * HUGE[1] // 4, 3 * HUGE[0] // 4), (40, 90, 160), -1)
    cv2.imwrite(str(tmp_path / 'src' / 'train' / 'n00000967' / 'n00000967_0.png'), image)
    return source


@pytest.mark.parametrize('budget, labelled', [(ADDRESS_SPACE_BUDGET, 3), (600, 2)])
def test_a_huge_image_in_bounded_memory(tmp_path, budget, labelled):
    """Under an address-space limit, a 150-megapixel image is labelled at its
    own size (the consensus at 2048 px) or, with too little room, skipped
    with its reason; the ordinary images of its batch are labelled either way."""
    source = _huge_source(tmp_path)
    out = tmp_path / 'labels'
    cfg = _write(tmp_path / 'gen.yml', {
        'seed': 0, 'source': source, 'classifiers': [{'name': 'efficientnet_lite0', 'input_size': 64}],
        'explainers': {'cam': {}}, 'output': {'pssl_root': str(out), 'batch_size': 4}})
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop('PSSL_DEBUG', None)
    result = subprocess.run([sys.executable, '-c', LIMITED, str(budget), '-c', cfg, '--no_progress'],
                            capture_output=True, text=True, timeout=TIMEOUT, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and 'Traceback' not in output, output[-3000:]
    assert f'written {labelled}, already there 0, skipped {3 - labelled}' in output, output[-2000:]
    from paddle_pssl.pseudo_labels import store
    labels = {rel: store.read_label(str(out / rel))[0] for rel, _, _ in store.list_labels(str(out))[0]}
    assert len(labels) == labelled
    huge = 'train/n00000967/n00000967_0.png_eiseg.npz'
    if labelled == 3:
        assert labels[huge].shape == HUGE and 'labelled at 2048x1365' in output
    else:
        assert huge not in labels
        assert 'n00000967_0.png: 15000x10000 image: out of memory while' in output
