"""The own-data recipe (docs/own_data.md, configs/recipes/) end to end on a tiny
generated set, through the command-line tools in subprocesses, from a folder
holding data/my_classes (3 classes with non-ImageNet names) and data/my_seg,
as a user would run it; and every --opts example of the tools' --help goes
through that tool's config path."""
import json
import os
import re
import resource
import subprocess
import sys

import numpy as np
import pytest

import paddle_pssl  # noqa: F401  (zlib before paddle)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, 'configs', 'recipes')
CLASSES = ['mug', 'spoon', 'teapot']           # sorted: ids 0, 1, 2
TINY_CROP = "[{type: RandomPaddingCrop, crop_size: [48, 48]}, {type: Normalize}]"


# ------------------------------------------------------------ help examples
def _help_example(main, capsys):
    """The key=value items after 'e.g.' in the --opts help of ``main``."""
    with pytest.raises(SystemExit):
        main(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    block = text.split('--opts OPTS [OPTS ...]', 1)[1]
    block = block.split('e.g.', 1)[1]
    block = re.split(r' --\w', block, maxsplit=1)[0]
    items = [word for word in block.split() if '=' in word]
    assert items, f'no example in {block!r}'
    return items


def test_every_opts_example_in_help_is_accepted_by_its_tool(capsys):
    from paddle_pssl.classification.train import train_cls_main
    from paddle_pssl.config import load_config, load_yaml, validate
    from paddle_pssl.benchmark.compare import compare_main
    from paddle_pssl.pseudo_labels.relabel import relabel_main
    from paddle_pssl.tools_impl import (export_main, generate_main, predict_main, train_main,
                                        val_main)

    def recipe(name):
        return os.path.join(RECIPES, name)

    # tool -> (its --help main, how the tool reads its config, configs it takes)
    def schema(kind):
        return lambda path, opts: validate(kind, load_yaml(path, opts), path)

    def paddleseg(path, opts):
        return load_config(path, opts=opts).dic

    tools = {
        'generate': (generate_main, schema('generator'),
                     [recipe('pseudo_labels.yml'),
                      os.path.join(ROOT, 'configs/pseudo_labels/imagenet_efficientnet_lite.yml')]),
        'train_cls': (train_cls_main, schema('classifier'),
                      [recipe('classifier.yml'), recipe('resnet18_vd/classifier.yml'),
                       os.path.join(ROOT, 'configs/classifiers/resnet18_vd_source.yml')]),
        'train': (train_main, paddleseg, [recipe('pretrain.yml'), recipe('finetune_pssl.yml'),
                                          recipe('finetune_imagenet_lite0.yml')]),
        'val': (val_main, paddleseg, [recipe('finetune_pssl.yml'), recipe('finetune_imagenet_lite0.yml')]),
        'predict': (predict_main, paddleseg, [recipe('finetune_pssl.yml')]),
        'export': (export_main, paddleseg, [recipe('finetune_pssl.yml')]),
        'relabel': (relabel_main, paddleseg, [recipe('pretrain.yml')]),
        'compare': (compare_main, paddleseg, [recipe('finetune_pssl.yml'), recipe('finetune_imagenet_lite0.yml')]),
    }
    for name, (main, read, configs) in tools.items():
        items = _help_example(main, capsys)
        for path in configs:
            before, after = read(path, None), read(path, items)
            assert before != after, f'{name}: {items} changed nothing in {path}'
            for item in items:   # each value arrived where the example says
                keys, value = item.split('=', 1)
                node = after
                for key in keys.split('.'):
                    node = node[key]
                assert str(node) == value, (name, path, item, node)


def test_old_shared_example_is_what_the_schemas_refused():
    """The example every tool used to show, refused by the generator and the
    classifier schemas (the reason each tool now shows its own)."""
    from paddle_pssl.config import load_yaml, validate
    from paddle_pssl.utils.errors import PSSLError
    for kind, path in (('generator', 'pseudo_labels.yml'), ('classifier', 'classifier.yml')):
        full = os.path.join(RECIPES, path)
        with pytest.raises(PSSLError, match='train_dataset|pssl_root'):
            validate(kind, load_yaml(full, ['train_dataset.pssl_root=data/pssl', 'batch_size=2']), full)


# --------------------------------------------------------------- end to end
class _Steps:
    """Runs each step's command from the user's folder and keeps its CPU seconds."""

    def __init__(self, cwd):
        self.cwd, self.cpu, self.logs = str(cwd), {}, {}
        self.env = dict(os.environ, PYTHONPATH=ROOT, FLAGS_call_stack_level='0')

    def __call__(self, name, tool, *args):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', tool), *args],
                              cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=600)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert proc.returncode == 0, f'{name}: {proc.stderr[-3000:]}'
        self.cpu[name] = self.cpu.get(name, 0.0) + (after.ru_utime - before.ru_utime) + \
            (after.ru_stime - before.ru_stime)
        self.logs[name] = self.logs.get(name, '') + proc.stdout + proc.stderr
        return proc.stdout + proc.stderr


def _config(name):
    return os.path.join(RECIPES, name)


def _tiny_train(config, save_dir, iters, batch, *opts):
    return ['-c', _config(config), '--do_eval', '--save_dir', save_dir, '--iters', str(iters),
            '--batch_size', str(batch), '--seed', '0', '--log_iters', '1',
            '--opts', f'train_dataset.transforms={TINY_CROP}', *opts]


def _tiny_labels(path, name, label, weights):
    """The recipe's label config at the tiny classifier's input size and stride."""
    path.write_text(
        f"_base_: {_config('pseudo_labels.yml' if name.startswith('eff') else 'resnet18_vd/pseudo_labels.yml')}\n"
        "classifiers:\n"
        f"  - {{name: {name}, label: {label}, weights: {weights},\n"
        "     num_classes: 3, input_size: 48, output_stride: 8}\n")
    return str(path)


PRETRAIN_CROP = ("train_dataset.transforms=[{type: RandomPaddingCrop, crop_size: [48, 48], "
                 "label_padding_value: 255}, {type: Normalize}]")


def _metrics(path):
    with open(path) as f:
        return json.load(f)


def test_recipe_end_to_end_on_a_tiny_set(tmp_path):
    """The default: EfficientNet-Lite0 fine-tuned from ImageNet on the user's
    classes, its labels, compact PSSL pre-training of DeepLabV3+-Lite0 from it,
    and the three fine-tunings paired by tools/compare_finetune.py, which
    resumes and equals a hand-run."""
    from paddle_pssl.classifiers import efficientnet_lite
    from paddle_pssl.datasets.synthetic import make_own_data_example
    from paddle_pssl.pseudo_labels import store
    from paddle_pssl.utils.safe_load import safe_load
    made = make_own_data_example(str(tmp_path), CLASSES[::-1])   # any order: ids follow the sorted names
    assert made['class_names'] == CLASSES and made['num_classes'] == 4   # the recipe's placeholder
    run = _Steps(tmp_path)
    out = tmp_path / 'output' / 'recipe'

    # 1. EfficientNet-Lite0 from its ImageNet weights, fine-tuned on the user's classes
    said = run('classifier', 'train_cls.py', '-c', _config('classifier.yml'), '--save_dir',
               'output/recipe/classifier', '--iters', '3', '--batch_size', '6', '--opts',
               'model.input_size=48', 'model.output_stride=8')
    report = json.loads((out / 'classifier' / 'train_cls.json').read_text())
    assert report['class_names'] == CLASSES and report['num_classes'] == 3
    assert 'model.weights null: efficientnet_lite0 starts from the ImageNet-1k weights of ' in said
    assert 'its classifier layer random (3 classes)' in said
    trained = safe_load(str(out / 'classifier' / 'model.pdparams'))['_conv_stem.weight']
    imagenet = efficientnet_lite('efficientnet_lite0').state_dict()['_conv_stem.weight'].numpy()
    random = efficientnet_lite('efficientnet_lite0', pretrained=False).state_dict()['_conv_stem.weight'].numpy()
    near = np.corrcoef(np.asarray(trained).ravel(), imagenet.ravel())[0, 1]
    assert near > 0.95 and abs(np.corrcoef(random.ravel(), imagenet.ravel())[0, 1]) < 0.3, near

    # 3. pseudo labels from it, then the contact sheet
    labels_cfg = _tiny_labels(tmp_path / 'pseudo_labels_tiny.yml', 'efficientnet_lite0', 'my_lite0',
                              'output/recipe/classifier/model.pdparams')
    said = run('labels', 'generate_pssl.py', '-c', labels_cfg, '--no_progress')
    assert 'written 18' in said, said
    labels, names = store.list_labels(str(out / 'labels'))
    assert names == CLASSES and len(labels) == 18
    for rel, class_id, class_name in labels:
        assert rel.startswith(f'{class_name}/') and CLASSES[class_id] == class_name
        mask, confidence = store.read_label(str(out / 'labels' / rel))
        assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 1}
    run('inspect', 'inspect_pssl.py', '--pssl_root', 'output/recipe/labels', '--num', '6')
    assert (out / 'labels' / 'inspect' / 'contact_sheet.png').stat().st_size > 1000
    # 3b. the PMM variant of the labels for the same classes (2 images: the CRF is the slow part)
    tiny_pmm = tmp_path / 'pseudo_labels_pmm_tiny.yml'
    tiny_pmm.write_text(open(labels_cfg).read().replace('pseudo_labels.yml', 'pseudo_labels_pmm.yml'))
    said = run('labels_pmm', 'generate_pssl.py', '-c', str(tiny_pmm), '--no_progress', '--max_images', '2',
               '--opts', 'output.batch_size=2')
    assert 'written 2' in said, said[-2000:]
    pmm_labels, pmm_names = store.list_labels(str(out / 'labels_pmm'))
    assert pmm_names == CLASSES and len(pmm_labels) == 2
    assert json.loads((out / 'labels_pmm' / 'fingerprint.json').read_text())['settings'][
        'consensus']['postprocess'] == 'pmm'

    # 4. PSSL pre-training of DeepLabV3+-Lite0 from the classifier, 3 classes + background
    said = run('pretrain', 'train.py', '-c', _config('pretrain.yml'), '--save_dir', 'output/recipe/pretrain',
               '--iters', '3', '--batch_size', '4', '--seed', '0', '--log_iters', '1', '--opts', PRETRAIN_CROP)
    assert 'Loading pretrained model from output/recipe/classifier/model.pdparams' in said
    assert 'There are 240/240 variables loaded into EfficientNetLiteBackbone' in said
    space = json.loads((out / 'pretrain' / 'label_space.json').read_text())
    assert (space['label_space'], space['num_classes'], space['background'], space['classes']) == \
        ('compact', 4, 3, CLASSES)
    assert safe_load(str(out / 'pretrain' / 'iter_3' / 'model.pdparams'))['head.decoder.conv.weight'].shape[0] == 4

    # 5+6. the three fine-tunings, paired with baseline (i) by seed: seed 0, then
    # seeds 0 and 1, which reuses seed 0's runs
    (tmp_path / 'arms').mkdir()
    (tmp_path / 'arms' / 'finetune_pssl.yml').write_text(
        f"_base_: {_config('finetune_pssl.yml')}\nmodel:\n  pretrained: output/recipe/pretrain/iter_3/model.pdparams\n")
    compare = ['--baseline', _config('finetune_imagenet_lite0.yml'), '--configs',
               _config('finetune_classifier_backbone.yml'), 'arms/finetune_pssl.yml', '--iters', '3',
               '--batch_size', '2', '--eval_batch_size', '4', '--save_dir', 'output/recipe/compare',
               '--opts', f'train_dataset.transforms={TINY_CROP}']
    arms = ['finetune_imagenet_lite0', 'finetune_classifier_backbone', 'finetune_pssl']
    said = run('compare seed 0', 'compare_finetune.py', *compare, '--seeds', '0')
    assert '[compare] 0 run(s) reused, 3 to run' in said
    cmp_dir = out / 'compare'
    logs = {arm: (cmp_dir / 'logs' / f'{arm}_seed0.log').read_text() for arm in arms}
    assert 'There are 240/240 variables loaded into EfficientNetLiteBackbone' in logs['finetune_classifier_backbone']
    assert re.search(r'EfficientNetLite0: 240/240 ImageNet parameters from \S+efficientnet-lite0-\w+\.pth',
                     logs['finetune_imagenet_lite0']), logs['finetune_imagenet_lite0'][-3000:]
    assert 'kept the random init of the pre-training output layer (head.decoder.conv.bias, ' \
           'head.decoder.conv.weight' in logs['finetune_pssl']
    loaded, total = map(int, re.search(r'There are (\d+)/(\d+) variables loaded into DeepLabV3P',
                                       logs['finetune_pssl']).groups())
    assert loaded == total
    first = {arm: (cmp_dir / arm / 'seed_0.metrics.json').stat().st_mtime_ns for arm in arms}

    said = run('compare seeds 0 1', 'compare_finetune.py', *compare, '--seeds', '0', '1')
    assert '[compare] 3 run(s) reused, 3 to run' in said
    assert first == {arm: (cmp_dir / arm / 'seed_0.metrics.json').stat().st_mtime_ns for arm in arms}
    result = json.loads((cmp_dir / 'compare.json').read_text())
    assert result['baseline'] == 'finetune_imagenet_lite0' and list(result['arms']) == arms
    for arm in arms:
        runs = result['arms'][arm]['runs']
        assert [r['seed'] for r in runs] == [0, 1] and all(0 <= r['miou'] <= 1 for r in runs)
        assert [r['miou'] for r in runs] == [
            _metrics(cmp_dir / arm / f'seed_{s}.metrics.json')['miou'] for s in (0, 1)]
        if arm != 'finetune_imagenet_lite0':
            paired = result['arms'][arm]['paired']
            base = result['arms']['finetune_imagenet_lite0']['runs']
            assert paired['per_seed'] == pytest.approx([r['miou'] - b['miou'] for r, b in zip(runs, base)])
            assert paired['n'] == 2 and paired['low'] <= paired['mean'] <= paired['high']
    table = (cmp_dir / 'compare.md').read_text()
    assert table in said and all(f'| {arm} |' in table for arm in arms)

    # a hand-run of the same two commands gives the same metrics
    run('hand-run', 'train.py', '-c', 'arms/finetune_pssl.yml', '--seed', '1', '--iters', '3', '--batch_size', '2',
        '--save_dir', 'output/recipe/hand', '--opts', f'train_dataset.transforms={TINY_CROP}')
    run('hand-run', 'val.py', '-c', 'arms/finetune_pssl.yml', '--model_path', 'output/recipe/hand/iter_3/model.pdparams',
        '--save_json', 'output/recipe/hand.json')
    assert _metrics(out / 'hand.json') == _metrics(cmp_dir / 'finetune_pssl' / 'seed_1.metrics.json')

    # other settings into the same folder: refused in one line, nothing touched
    before = sorted((p, p.stat().st_mtime_ns) for p in cmp_dir.rglob('*') if p.is_file())
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'compare_finetune.py'),
                           *compare, '--seeds', '0', '--iters', '2'], cwd=str(tmp_path), env=run.env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'error: output/recipe/compare: 3 finished run(s) of other commands or inputs, or not started by a '
        'compare ('), proc.stderr
    assert '--overwrite' in proc.stderr
    assert before == sorted((p, p.stat().st_mtime_ns) for p in cmp_dir.rglob('*') if p.is_file())

    print('\nCPU seconds per step (tiny set):', json.dumps({k: round(v, 1) for k, v in run.cpu.items()}))


def test_resnet18_vd_variant_end_to_end_on_a_tiny_set(tmp_path):
    """The variant: ResNet18_vd from random weights, converted into the
    segmentation backbone, its labels, compact pre-training, fine-tuning."""
    from paddle_pssl.pseudo_labels import store
    from paddle_pssl.datasets.synthetic import make_own_data_example
    make_own_data_example(str(tmp_path), CLASSES)
    run = _Steps(tmp_path)
    out = tmp_path / 'output' / 'recipe_resnet18_vd'

    # 1. the classifier of the user's classes from random weights
    run('classifier', 'train_cls.py', '-c', _config('resnet18_vd/classifier.yml'), '--save_dir',
        'output/recipe_resnet18_vd/classifier', '--iters', '3', '--batch_size', '6', '--opts',
        'model.input_size=48', 'model.output_stride=8')
    assert json.loads((out / 'classifier' / 'train_cls.json').read_text())['class_names'] == CLASSES

    # 2. its weights as the segmentation backbone
    run('convert', 'convert_cls_to_seg.py', '--weights', 'output/recipe_resnet18_vd/classifier/model.pdparams',
        '--backbone', 'ResNet18_vd', '--out', 'output/recipe_resnet18_vd/classifier/backbone.pdparams')
    assert (out / 'classifier' / 'backbone.pdparams').is_file()

    # 3. pseudo labels
    labels_cfg = _tiny_labels(tmp_path / 'pseudo_labels_tiny.yml', 'ResNet18_vd', 'my_resnet18',
                              'output/recipe_resnet18_vd/classifier/model.pdparams')
    said = run('labels', 'generate_pssl.py', '-c', labels_cfg, '--no_progress')
    assert 'written 18' in said and store.list_labels(str(out / 'labels'))[1] == CLASSES

    # 4. PSSL pre-training. An earlier run's checkpoint in save_dir is refused
    # in one line, kept, and deleted only with --overwrite, which says so.
    stale = out / 'pretrain' / 'iter_999'
    stale.mkdir(parents=True)
    (stale / 'model.pdparams').write_bytes(b'earlier run')
    pretrain = ['-c', _config('resnet18_vd/pretrain.yml'), '--save_dir', 'output/recipe_resnet18_vd/pretrain',
                '--iters', '3', '--batch_size', '4', '--seed', '0', '--log_iters', '1', '--opts', PRETRAIN_CROP]
    refused = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'train.py'), *pretrain],
                             cwd=str(tmp_path), env=run.env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and (stale / 'model.pdparams').read_bytes() == b'earlier run'
    assert refused.stderr.strip().splitlines()[-1] == (
        'error: output/recipe_resnet18_vd/pretrain: holds an earlier run (iter_999); to keep it choose another '
        '--save_dir, to delete it pass --overwrite')
    said = run('pretrain', 'train.py', *pretrain, '--overwrite')
    assert 'iter_3' in os.listdir(out / 'pretrain') and not stale.exists()
    assert 'output/recipe_resnet18_vd/pretrain: --overwrite: deleted the earlier run (iter_999)' in said
    assert json.loads((out / 'pretrain' / 'label_space.json').read_text())['num_classes'] == 4

    # 5. fine-tuning from it, and its baseline; each evaluated by tools/val.py
    runs = {'finetune_pssl': ['model.pretrained=output/recipe_resnet18_vd/pretrain/iter_3/model.pdparams'],
            'finetune_classifier_backbone': []}
    for name, opts in runs.items():
        said = run(name, 'train.py', *_tiny_train(f'resnet18_vd/{name}.yml', f'output/recipe_resnet18_vd/{name}',
                                                  3, 2, *opts))
        if name == 'finetune_pssl':
            # every parameter loaded; the compact output layer then set back to its random init
            loaded, total = map(int, re.search(r'There are (\d+)/(\d+) variables loaded into DeepLabV3P',
                                               said).groups())
            assert loaded == total
            assert 'kept the random init of the pre-training output layer (head.decoder.conv.bias, ' \
                   'head.decoder.conv.weight' in said
        run(name, 'val.py', '-c', _config(f'resnet18_vd/{name}.yml'), '--model_path',
            f'output/recipe_resnet18_vd/{name}/iter_3/model.pdparams', '--save_json',
            f'output/recipe_resnet18_vd/{name}.json', *(['--opts', *opts] if opts else []))
        metrics = _metrics(out / f'{name}.json')
        assert 0.0 <= metrics['miou'] <= 1.0 and len(metrics['class_iou']) == 4

    print('\nCPU seconds per step (tiny set, ResNet18_vd variant):',
          json.dumps({k: round(v, 1) for k, v in run.cpu.items()}))


def test_compare_refuses_bad_arguments_in_one_line(tmp_path):
    """Bad flags and configs stop before any run: exit 2, one error line, nothing written."""
    base, other = _config('finetune_imagenet_lite0.yml'), _config('finetune_classifier_backbone.yml')
    cases = [
        (['--seeds', '0', '0'], '--seeds 0 0: a seed appears twice'),
        (['--configs', other, _config('resnet18_vd/finetune_classifier_backbone.yml')],
         'two configs share a file name'),
        (['--configs', _config('pretrain.yml')], 'val_dataset is required'),
        (['--configs', str(tmp_path / 'missing.yml')], 'missing.yml: config file not found'),
        (['--iters', '0'], '--iters 0: must be an integer >= 1'),
    ]
    driver = ('import sys, json, contextlib, io\nimport paddle_pssl\n'
              'from paddle_pssl.benchmark.compare import compare_main\nfrom paddle_pssl.utils.cli import run\n'
              'out = []\nfor argv in json.loads(sys.argv[1]):\n'
              '    buf = io.StringIO()\n'
              '    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):\n'
              '        try:\n            run(compare_main, argv)\n            code = 0\n'
              '        except SystemExit as e:\n            code = e.code\n'
              '    out.append([code, buf.getvalue()])\nprint(json.dumps(out))\n')
    argvs = []
    for flags, _ in cases:
        argv = ['--baseline', base, '--save_dir', str(tmp_path / 'cmp')]
        argv += flags if '--configs' in flags else ['--configs', other, *flags]
        argvs.append(argv)
    # a run folder no compare started (a hand-run there, say) is kept, not emptied
    foreign = tmp_path / 'mine' / 'finetune_classifier_backbone' / 'seed_0' / 'iter_5'
    foreign.mkdir(parents=True)
    (foreign / 'model.pdparams').write_bytes(b'my run')
    cases.append(([], 'mine: 1 finished run(s) of other commands or inputs, or not started by a compare '
                      '(finetune_classifier_backbone_seed0)'))
    argvs.append(['--baseline', base, '--configs', other, '--seeds', '0', '--save_dir', str(tmp_path / 'mine')])
    proc = subprocess.run([sys.executable, '-c', driver, json.dumps(argvs)], cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=300)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (flags, expected), (code, said) in zip(cases, results):
        lines = [line for line in said.strip().splitlines() if line.startswith('error:')]
        assert code == 2 and len(lines) == 1 and expected in lines[0], (flags, said)
    assert not (tmp_path / 'cmp').exists() and (foreign / 'model.pdparams').read_bytes() == b'my run'


def test_the_page_runs_every_recipe_config_with_existing_tools():
    """docs/own_data.md's commands name tools and configs that exist, and
    every recipe config (but the _base_ pieces) is run by one of them."""
    page = open(os.path.join(ROOT, 'docs', 'own_data.md')).read()
    commands = ' '.join(' '.join(re.findall(r'```bash\n(.*?)```', page, re.S)).replace('\\\n', ' ').split())
    tools = set(re.findall(r'python (tools/\w+\.py)', commands))
    assert tools >= {'tools/train_cls.py', 'tools/convert_cls_to_seg.py', 'tools/generate_pssl.py',
                     'tools/inspect_pssl.py', 'tools/train.py', 'tools/val.py',
                     'tools/compare_finetune.py'}, tools
    assert all(os.path.isfile(os.path.join(ROOT, t)) for t in tools)
    named = set(re.findall(r'configs/recipes/([\w/]+)\.yml', commands))
    shipped = {os.path.relpath(os.path.join(d, n), RECIPES)[:-4] for d, _, files in os.walk(RECIPES)
               for n in files if n.endswith('.yml') and '_base_' not in d}
    assert named == shipped, (named ^ shipped)
