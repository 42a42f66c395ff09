"""The bad-input corpus (issue 14, F4 and friends): each probe is a config or
flag mistake given to a CLI; each must end with exit 2, exactly one
``error:`` line naming the key, flag or file, no traceback, and the output
folder as it was.

Every CLI imports Paddle (~8 s), so the probes of one tool run in one
subprocess (:data:`DRIVER`), each through the tool's own ``run(main, argv)``
(all that ``tools/<tool>.py`` does) with its own captured output;
:func:`test_driver_matches_the_scripts` checks that the scripts themselves
give the same lines.
"""
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300
MAINS = {'train': ('paddle_pssl.tools_impl', 'train_main', 'tools/train.py'),
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


@pytest.fixture(scope='module')
def data(toy_pssl, tmp_path_factory):
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
    return {'tmp': tmp, 'train': train, 'generator': generator, 'synsets_twice': str(twice),
            'classifier': classifier}


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
