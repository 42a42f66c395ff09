"""The bad-input corpus (issue 14, F4 and friends; issue 20: label values,
non-finite losses, weights that fit nothing, classes the classifiers cannot
know, target masks, YAML flow values in --opts, PaddleSeg's consistency
errors): each probe is a config, flag or data mistake given to a CLI; each
must end with exit 2, exactly one ``error:`` line naming the key, flag or
file, no traceback, and the output folder as it was. Cases whose rule is to
go on (a skipped label, a 0/255 warning, bad labels counted, a huge image)
are tests of their own below the probes.

Every CLI imports Paddle (~8 s), so the probes of one tool run in one
subprocess (:data:`DRIVER`), each through the tool's own ``run(main, argv)``
(all that ``tools/<tool>.py`` does) with its own captured output;
:func:`test_driver_matches_the_scripts` checks that the scripts themselves
give the same lines.
"""
import glob
import json
import os
import shutil
import stat
import subprocess
import sys

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
         'benchmark': ('paddle_pssl.benchmark.cli', 'benchmark_main', 'tools/benchmark_pssl.py')}
# Runs [(id, argv)] of one tool from a JSON file; writes {id: [exit code, output]}.
DRIVER = r'''
import contextlib, importlib, io, json, sys, traceback
import paddle_pssl
from paddle_pssl.utils.cli import run
module, name, probes, out = sys.argv[1:5]
main = getattr(importlib.import_module(module), name)
results = {}
for pid, argv in json.load(open(probes)):
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
    paddle.save(seg_builder(load_config(target_cfg)).model.state_dict(), str(tmp / 'target_model.pdparams'))
    other = tmp / 'other' / 'iter_5'
    other.mkdir(parents=True)
    paddle.save({'backbone.conv1_1._conv.weight': paddle.zeros([16, 3, 3, 3])}, str(other / 'model.pdparams'))
    paddle.save({}, str(other / 'model.pdopt'))
    return {'cls_weights': str(tmp / 'cls.pdparams'), 'target_weights': str(tmp / 'target_model.pdparams'),
            'other_ckpt': str(other)}


def _own_classes(toy_pssl, tmp):
    """A class-per-folder set named as a new user names it: cat/, coffee/, rocket/."""
    root = tmp / 'own'
    images = sorted(glob.glob(os.path.join(toy_pssl['imagenet_root'], 'train', '*', '*')))
    for name, image in zip(('cat', 'coffee', 'rocket'), images):
        (root / name).mkdir(parents=True)
        shutil.copy(image, root / name / os.path.basename(image))
    return str(root)


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
    return dict({'tmp': tmp, 'train': train, 'generator': generator, 'synsets_twice': str(twice),
                 'classifier': classifier, 'store': _bad_store(toy_pssl, tmp), 'target': target,
                 'target_root': target_root, 'own': _own_classes(toy_pssl, tmp)},
                **_weights(tmp, target))


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
]
PROBE_IDS = [p[0] for p in PROBES]


def _out_folder(data, pid):
    out = data['tmp'] / 'out' / pid
    out.mkdir(parents=True, exist_ok=True)
    (out / 'keep.txt').write_text(SENTINEL)
    return str(out)


@pytest.fixture(scope='module')
def results(data):
    """{probe id: (exit code, output)}, one subprocess per tool."""
    by_tool = {}
    for pid, tool, argv, _ in PROBES:
        args = argv(data, _out_folder(data, pid))
        if tool == 'train':
            args += ['--save_dir', str(data['tmp'] / 'out' / pid)]
        by_tool.setdefault(tool, []).append((pid, args))
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop('PSSL_DEBUG', None)
    procs = []
    for tool, probes in by_tool.items():
        module, name, _ = MAINS[tool]
        listing, out = data['tmp'] / f'{tool}.json', data['tmp'] / f'{tool}.out.json'
        listing.write_text(json.dumps(probes))
        procs.append((subprocess.Popen([sys.executable, '-c', DRIVER, module, name, str(listing), str(out)],
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
    assert needle in error, error
    assert '\n' not in error and len(error) < 600, error   # no config dump
    out = data['tmp'] / 'out' / pid
    assert sorted(os.listdir(out)) == ['keep.txt']
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


def test_binary_masks_of_0_and_255_warn_once_naming_a_file(data, tmp_path):
    from PIL import Image
    root = tmp_path / 'binary'
    shutil.copytree(data['target_root'], root)
    for path in glob.glob(str(root / 'labels' / '*.png')):
        label = np.asarray(Image.open(path))
        Image.fromarray(((label > 0) * 255).astype(np.uint8)).save(path)
    cfg = _write(tmp_path / 'binary.yml', {'_base_': data['target'], 'model': {'num_classes': 2},
                                           'train_dataset': {'dataset_root': str(root), 'num_classes': 2,
                                                             'train_path': str(root / 'train.txt')},
                                           'val_dataset': {'dataset_root': str(root), 'num_classes': 2,
                                                           'val_path': str(root / 'val.txt')}})
    code, out = _cli('train', '-c', cfg, '--save_dir', str(tmp_path / 'out'))
    assert code == 0 and 'Traceback' not in out, out[-3000:]
    warned = [line for line in out.splitlines() if '255 is the ignore index' in line]
    assert len(warned) == 1, warned
    assert f'{root}/labels/' in warned[0] and 'save masks as 0/1' in warned[0]


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
