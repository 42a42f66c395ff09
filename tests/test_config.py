"""paddle_pssl.config: the one loader (YAML, _base_, --opts) and the schemas
of the four config kinds; every bad input is one line naming the key."""
import dataclasses
import glob
import os
import subprocess
import sys

import pytest
import yaml

import paddle_pssl  # noqa: F401  (zlib before paddle)
from paddle_pssl.config import (apply_opts, default_config, load_config, load_yaml,
                                mm_tuning_settings, validate)
from paddle_pssl.config.schemas import DEFAULT_INITS
from paddle_pssl.pseudo_labels.pmm import DenseCRFParams
from paddle_pssl.utils.errors import PSSLError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN = os.path.join(REPO, 'configs', 'pretrain', 'deeplabv3_resnet50_vd_pssl.yml')
MM = os.path.join(REPO, 'configs', 'mm_tuning', 'deeplabv3p_resnet18_vd_benchmark.yml')


def _yml(tmp_path, name, dic):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(dic))
    return str(path)


def _one_line_error(fn, *args, **kwargs):
    with pytest.raises(PSSLError) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert '\n' not in message, message
    return message


def _same(a, b):
    """Equal values of equal types (1 and 1.0 differ), recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# ------------------------------------------------------------------ loader
def test_circular_base_is_one_line(tmp_path):
    a = _yml(tmp_path, 'a.yml', {'_base_': 'b.yml', 'seed': 1})
    _yml(tmp_path, 'b.yml', {'_base_': ['c.yml']})
    _yml(tmp_path, 'c.yml', {'_base_': 'a.yml'})
    message = _one_line_error(load_yaml, a)
    assert message == f'{tmp_path}/c.yml: circular _base_ (a.yml -> b.yml -> c.yml -> a.yml)'
    self_loop = _yml(tmp_path, 's.yml', {'_base_': 's.yml'})
    assert 'circular _base_ (s.yml -> s.yml)' in _one_line_error(load_config, self_loop)


def test_circular_base_cli_exits_2(tmp_path):
    a = _yml(tmp_path, 'a.yml', {'_base_': 'b.yml'})
    _yml(tmp_path, 'b.yml', {'_base_': 'a.yml'})
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'generate_pssl.py'), '-c', a],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f'error: {tmp_path}/b.yml: circular _base_ (a.yml -> b.yml -> a.yml)']


def test_missing_base_names_the_including_file(tmp_path):
    a = _yml(tmp_path, 'a.yml', {'_base_': 'nope/base.yml', 'seed': 1})
    message = _one_line_error(load_yaml, a)
    assert message.startswith(f"{a}: _base_ 'nope/base.yml' not found")
    assert _one_line_error(load_yaml, str(tmp_path / 'x.yml')) == f'{tmp_path}/x.yml: config file not found'


def test_base_merge_is_paddleseg_s(tmp_path):
    _yml(tmp_path, 'b1.yml', {'x': {'p': 1, 'q': 2}, 'y': 1, 'z': [1, 2]})
    _yml(tmp_path, 'b2.yml', {'y': 2, 'w': {'k': 1}, 'v': 5})
    a = _yml(tmp_path, 'a.yml', {'_base_': ['b1.yml', 'b2.yml'], 'x': {'q': 3}, 'z': [9],
                                 'w': {'_inherited_': False, 'j': 2}})
    # earlier bases win over later ones; _inherited_: false replaces the block
    assert load_yaml(a) == {'y': 1, 'w': {'j': 2}, 'v': 5, 'x': {'p': 1, 'q': 3}, 'z': [9]}


def test_loader_matches_paddleseg_on_every_shipped_config():
    from paddleseg.cvlibs.config import parse_from_yaml

    def drop_inherit(node):
        if isinstance(node, dict):
            node.pop('_inherited_', None)
            for v in node.values():
                drop_inherit(v)
        elif isinstance(node, list):
            for v in node:
                drop_inherit(v)
        return node

    paths = glob.glob(os.path.join(REPO, 'configs', '**', '*.yml'), recursive=True)
    assert len(paths) > 40
    for path in paths:
        assert _same(load_yaml(path), drop_inherit(parse_from_yaml(path) or {})), path


def test_opts_null_unsets_and_values_parse(tmp_path):
    path = _yml(tmp_path, 'g.yml', {'seed': 3, 'source': {'image_root': 'x', 'synsets': 's.txt'},
                                    'consensus': {'weights': {'lime': 0.5}}})
    dic = load_yaml(path, ['seed=null', 'source.synsets=~', 'consensus.weights=None',
                           'consensus.pmm.t=0.1', 'output.batch_size=4', 'output.pssl_root=a=b',
                           'consensus.pmm.smooth=false', 'absent.key=null'])
    assert dic == {'source': {'image_root': 'x'}, 'consensus': {'pmm': {'t': 0.1, 'smooth': False}},
                   'output': {'batch_size': 4, 'pssl_root': 'a=b'}}
    cfg = validate('generator', dic, path)
    assert cfg['seed'] == 0 and cfg['source']['synsets'] is None and cfg['consensus']['weights'] is None
    assert "--opts 'seed'" in _one_line_error(apply_opts, {}, ['seed'])
    # PaddleSeg configs: null unsets there too, and a missing section is named
    cfg = load_config(PRETRAIN, opts=['model.pretrained=null', 'batch_size=3'])
    assert 'pretrained' not in cfg.dic['model'] and cfg.batch_size == 3
    message = _one_line_error(load_config, PRETRAIN, opts=['modle.num_classes=3'])
    assert "'modle.num_classes=3': modle is not in the config (did you mean 'model'?)" in message


# ----------------------------------------------------------------- schemas
OLD_GENERATOR = {
    'seed': 0,
    'source': {'image_root': None, 'file_list': None, 'synsets': None},
    'classifiers': [{'name': 'efficientnet_lite0'}, {'name': 'efficientnet_lite1', 'input_size': 224},
                    {'name': 'efficientnet_lite2', 'input_size': 224}],
    'explainers': {'cam': {}, 'gradcam': {}, 'smoothgrad': {}, 'lime': {}},
    'explainers_engine': 'inference',   # new in issue 13 (the fast engine by default)
    'consensus': {'method': 'mean', 'renormalize': 'none', 'threshold': 'mean', 'value': 1.0,
                  'member_threshold': None, 'member_value': None, 'weights': None,
                  'cut_bias': 0.0, 'per_classifier': False, 'quorum': 0.5,   # new in issue 26
                  'postprocess': 'none',
                  'pmm': {'normalize': 'threshold', 't': 0.05, 'a': 0.3, 'smooth': True,
                          'crf': dataclasses.asdict(DenseCRFParams())}},
    'output': {'pssl_root': 'output/pssl_labels', 'batch_size': 8, 'vdl_every': 0,
               'on_bad_image': 'skip'},
}
OLD_CLASSIFIER = {
    'seed': 0,
    'model': {'name': 'ResNet18_vd', 'weights': None, 'input_size': 64,
              'output_stride': 32},   # new in issue 13 (finer CAMs)
    'train_dataset': {'image_root': 'output/benchmark/data/source/imagenet',
                      'file_list': None, 'synsets': None, 'val_fraction': 0.1,
                      'on_bad_image': 'skip',
                      # issue 26: read per batch (store_size, the in-memory copy's side, is gone)
                      'num_workers': 2, 'use_shared_memory': True},
    'batch_size': 32, 'iters': 100, 'epochs': None,
    'optimizer': {'type': 'momentum', 'lr': 0.05, 'momentum': 0.9, 'nesterov': False,
                  'weight_decay': 1e-4, 'decay': 'cosine', 'end_lr': 0.0,
                  'power': 0.9, 'warmup_iters': 0},
    'augment': {'flip': True, 'random_resized_crop': [0.35, 1.0], 'ratio': [0.75, 4.0 / 3.0]},
    'loss': {'gap': 1.0, 'gap_loss': 'ce', 'importance_sampling': 0.0,
             'num_samples': 10, 'present_only': False, 'feature_similarity': 0.0,
             'fs_mu': 2.5, 'fs_sigma': 5.0, 'fs_radius': None, 'fs_mode': 'window'},
    'save_interval': 0, 'keep_checkpoint_max': 2, 'eval_interval': 0,
    'on_nonfinite_loss': 'stop',   # new in issue 20 (stop was the only rule before)
}
OLD_MM = {  # mm_settings({}): DEFAULTS with SAMPLER_DEFAULTS filled in
    'iters': 8000, 'images_per_step': 8, 'learning_rate': 0.01, 'decay_at': 0.75,
    'decay_factor': 0.1, 'momentum': 0.9, 'weight_decay': 4.0e-5, 'margin': 2.1,
    'feature_index': -1, 'freeze_bn': False,
    'sampler': {'num_patches': 10, 'min_size': 64, 'max_size': 256, 'out_size': 128,
                'fg_ratio': 0.9, 'background_ids': [0], 'ignore_index': None,
                'oversample': 5, 'max_overlap': 0.6, 'pad_value': 0.0},
}
# issue 19 changed the benchmark's sizes (five paired seeds, 8 labelled target
# images, 192 test images) and made its rows data; issue 24 pre-trains every
# labelled row at five seeds, adds the objectness row and the pairs, and
# evaluates in batches
OLD_BENCHMARK = {
    'seed': 0, 'seeds': [0, 1, 2, 3, 4], 'scale': 1.0,
    'data': {'source': {'num_classes': 6, 'images_per_class': 40, 'image_size': 48},
             'target': {'num_classes': 3, 'num_train': 8, 'num_test': 192, 'image_size': 48}},
    'classifiers': [
        {'label': 'resnet18_vd', 'config': 'configs/classifiers/resnet18_vd_source.yml', 'iters': 40},
        {'label': 'mobilenetv3_small', 'config': 'configs/classifiers/mobilenetv3_small_source.yml',
         'iters': 60}],
    'classifier_iters': None, 'backbone_classifier': 'resnet18_vd',
    'pseudo_labels': 'configs/benchmark/pseudo_labels.yml', 'pseudo_label_overrides': {},
    'inits': DEFAULT_INITS, 'baseline': 'b_classifier_backbone', 'ceiling': None, 'pairs': None,
    'report_name': 'results',
    'pretrain': {'config': 'configs/benchmark/pretrain_pssl.yml', 'iters': 80, 'batch_size': 8,
                 'seeds': [0, 1, 2, 3, 4]},
    'finetune': {'config': 'configs/benchmark/finetune.yml', 'iters': 50, 'batch_size': 8,
                 'eval_batch_size': 32, 'train_sizes': None, 'size_inits': None},
    'examples': 4, 'workers': 2, 'extensions': [], 'extension_options': {},
}


def test_defaults_are_the_old_ones_value_and_type():
    for kind, old in (('generator', OLD_GENERATOR), ('classifier', OLD_CLASSIFIER),
                      ('mm_tuning', OLD_MM), ('benchmark', OLD_BENCHMARK)):
        assert _same(default_config(kind), old), kind
    gen = validate('generator', {'source': {'image_root': 'x'}})
    assert _same(gen, dict(OLD_GENERATOR, source={'image_root': 'x', 'file_list': None, 'synsets': None}))
    assert type(gen['output']['batch_size']) is int and type(gen['consensus']['value']) is float
    assert gen['consensus']['pmm']['crf']['iterations'] == 10
    assert _same(validate('classifier', None), OLD_CLASSIFIER)
    assert _same(mm_tuning_settings(None), OLD_MM)
    assert _same(validate('benchmark', {}), OLD_BENCHMARK)


def test_given_values_come_back_unchanged():
    cfg = validate('generator', {'source': {'image_root': 'x'}, 'consensus': {'value': 2, 'pmm': {
        'crf': {'iterations': 3}}}, 'explainers': ['cam'], 'classifiers': [{'name': 'a', 'label': 'b'}]})
    assert cfg['consensus']['value'] == 2 and type(cfg['consensus']['value']) is int
    crf = cfg['consensus']['pmm']['crf']
    assert crf['iterations'] == 3 and crf['gaussian_sxy'] == 3.0
    assert cfg['explainers'] == ['cam'] and cfg['classifiers'] == [{'name': 'a', 'label': 'b'}]
    assert validate('generator', cfg) == cfg    # validating twice changes nothing


@pytest.mark.parametrize('kind, cfg, needle', [
    ('generator', {'consensus': {'value': 'high'}}, "g.yml: consensus.value 'high': must be a number"),
    ('generator', {'output': {'batch_size': -2}}, 'g.yml: output.batch_size -2: must be >= 1'),
    ('generator', {'output': {'batch_size': 'three'}}, "output.batch_size 'three': must be an integer"),
    ('generator', {'seed': 'abc'}, "g.yml: seed 'abc': must be an integer"),
    ('generator', {'consensus': {'pmm': {'normalize': 'peak'}}},
     "g.yml: consensus.pmm.normalize 'peak': must be one of 'threshold', 'max', 'minmax'"),
    ('generator', {'consensus': {'pmm': {'crf': {'iteration': 3}}}},
     "g.yml: unknown key 'consensus.pmm.crf.iteration' (did you mean 'iterations'?)"),
    ('generator', {'classifiers': []}, 'g.yml: classifiers []: must be a list of at least 1 entry'),
    ('generator', {'classifiers': [{'input_size': 224}]}, 'g.yml: classifiers[0].name is required'),
    ('classifier', {'optimizer': {'decay': 'step'}}, "g.yml: optimizer.decay 'step': must be one of"),
    ('classifier', {'loss': {'fs_sigma': 0}}, 'g.yml: loss.fs_sigma 0: must be > 0'),
    ('classifier', {'augment': {'random_resized_crop': [0.5, 2]}},
     'g.yml: augment.random_resized_crop [0.5, 2]: must be [min, max] with 0 < min <= max <= 1'),
    ('classifier', {'augment': {'flips': False}},
     "g.yml: unknown key 'augment.flips' (did you mean 'flip'?)"),
    ('classifier', {'iters': 2.5}, 'g.yml: iters 2.5: must be an integer (no decimal point)'),
    ('mm_tuning', {'sampler': {'fg_ratio': 2}}, 'g.yml: mm_tuning.sampler.fg_ratio 2: must be <= 1'),
    ('mm_tuning', {'sampler': {'min_size': 300}},
     'g.yml: mm_tuning.sampler.min_size 300: must be <= max_size'),
    ('mm_tuning', {'freeze_bn': 'yes'}, "g.yml: mm_tuning.freeze_bn 'yes': must be true or false"),
    ('mm_tuning', {'sampler': {'out_sise': 32}},
     "unknown key 'mm_tuning.sampler.out_sise' (did you mean 'out_size'?)"),
    ('benchmark', {'data': {'source': {'image_size': 'big'}}},
     "g.yml: data.source.image_size 'big': must be an integer"),
    ('benchmark', {'scale': 0}, 'g.yml: scale 0: must be > 0'),
    ('benchmark', {'data': {'target': {'num_tests': 4}}},
     "unknown key 'data.target.num_tests' (did you mean 'num_test'?)"),
    ('benchmark', {'seeds': [0, 'a']}, "g.yml: seeds [0, 'a']: must be a list of integers"),
])
def test_bad_value_is_one_line_naming_the_key(kind, cfg, needle):
    if kind == 'generator':
        cfg = dict({'source': {'image_root': 'x'}}, **cfg)
    if kind == 'mm_tuning':
        message = _one_line_error(mm_tuning_settings, cfg, path='g.yml')
    else:
        message = _one_line_error(validate, kind, cfg, 'g.yml')
    assert needle in message, message


def test_mm_cli_overrides_are_checked_too():
    assert mm_tuning_settings({'iters': 5}, iters=7, images_per_step=3)['iters'] == 7
    message = _one_line_error(mm_tuning_settings, {}, images_per_step=0)
    assert 'mm_tuning.images_per_step 0: must be >= 1' in message


# --------------------------------------------------------- PaddleSeg configs
def test_paddleseg_flags_and_top_level_keys_are_checked(tmp_path):
    assert "--iters 0: must be an integer >= 1" in _one_line_error(load_config, PRETRAIN, iters=0)
    assert "--batch_size -1: must be an integer >= 1" in _one_line_error(load_config, PRETRAIN, batch_size=-1)
    assert "--learning_rate 0: must be > 0" in _one_line_error(load_config, PRETRAIN, learning_rate=0)
    assert load_config(PRETRAIN, iters=3).iters == 3
    for opt, needle in (('iters=ten', "iters 'ten': must be an integer"),
                        ('batch_size=0', 'batch_size 0: must be >= 1'),
                        ('seed=1.5', 'seed 1.5: must be an integer')):
        assert f'{PRETRAIN}: {needle}' in _one_line_error(load_config, PRETRAIN, opts=[opt])
    bad_mm = _yml(tmp_path, 'mm.yml', {'_base_': MM, 'mm_tuning': {'margn': 2.0}})
    assert _one_line_error(load_config, bad_mm) == (
        f"{bad_mm}: unknown key 'mm_tuning.margn' (did you mean 'margin'?)")
    no_model = _yml(tmp_path, 'nm.yml', {'_base_': PRETRAIN, 'model': {'_inherited_': False}})
    no_model_message = _one_line_error(load_config, no_model, opts=['model=null'])
    assert no_model_message == f'{no_model}: No model specified in the configuration file.'


def test_train_cli_refuses_iters_0():
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'train.py'), '-c', PRETRAIN,
                             '--iters', '0'], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == 'error: --iters 0: must be an integer >= 1'


# ------------------------------------------------- components, by key path
@pytest.mark.parametrize('changes, needle', [
    ({'optimizer': {'type': 'Adamw'}}, "optimizer.type 'Adamw' is not an optimizer (did you mean 'AdamW'?)"),
    ({'optimizer': {'type': 'SGD', 'momentum': 0.9, 'nesterov': True}},
     "optimizer.nesterov: unknown argument of Momentum"),
    ({'lr_scheduler': {'type': 'Poly', 'learning_rate': 0.1}}, "lr_scheduler.type 'Poly' is not a scheduler"),
    ({'lr_scheduler': {'_inherited_': False, 'type': 'StepDecay', 'learning_rate': 0.1, 'stepsize': 10}},
     "lr_scheduler.stepsize: unknown argument of StepDecay (did you mean 'step_size'?)"),
    ({'model': {'backbone': {'pretraind': 'x'}}},
     "model.backbone.pretraind: unknown argument of ResNet50_vd (did you mean 'pretrained'?)"),
    ({'model': {'backbone_indice': [3]}},
     "model.backbone_indice: unknown argument of DeepLabV3 (did you mean 'backbone_indices'?)"),
])
def test_component_types_and_arguments_are_checked_by_key_path(tmp_path, changes, needle):
    path = _yml(tmp_path, 'c.yml', dict({'_base_': PRETRAIN}, **changes))
    message = _one_line_error(load_config, path)
    assert message.startswith(f'{path}: {needle}'), message


def test_argument_check_accepts_every_shipped_paddleseg_config():
    from paddle_pssl.config.components import accepted_arguments
    from paddleseg.cvlibs import manager
    # PaddleSeg's factory functions take what the class they call takes
    assert 'pretrained' in accepted_arguments(manager.BACKBONES['ResNet50_vd'])
    assert 'relative_lr' in accepted_arguments(manager.BACKBONES['STDC1'])
    count = 0
    for path in glob.glob(os.path.join(REPO, 'configs', '**', '*.yml'), recursive=True):
        dic = load_yaml(path)
        if isinstance(dic.get('model'), dict) and 'type' in dic['model'] and 'iters' in dic:
            load_config(path)
            count += 1
    assert count >= 20


def test_generator_checks_explainer_options_before_the_store(tmp_path):
    from paddle_pssl.explainers import check_explainer_options
    assert check_explainer_options({'cam': {}, 'gradcam': None, 'smoothgrad': {'n_samples': 8},
                                    'lime': {'num_samples': 64, 'engine': 'inference'}}) is None
    assert check_explainer_options(['cam', 'Grad_CAM']) is None
    assert check_explainer_options({'intgrad': {'steps': 0}}) == \
        'explainers.intgrad.steps 0: must be an integer >= 1'
    assert check_explainer_options({'smoothgrad': {'n_samples': 2.5}}) == \
        'explainers.smoothgrad.n_samples 2.5: must be an integer >= 1'
    assert check_explainer_options({'cam': {'runner': None}}).startswith(
        'explainers.cam.runner: unknown option of cam')
    assert check_explainer_options({'lime': 5}) == 'explainers.lime 5: must be a mapping of options'


# ------------------------------------------- upstream's configs/pssl, as is
UPSTREAM_WEIGHT = [1.0] * 1000 + [0.1]   # upstream's loss weight: background 0.1


def _upstream_pp_liteseg_stdc1(imagenet_root, pssl_root, pretrained, size):
    """The keys and values of PaddleSeg's configs/pssl/pp_liteseg_stdc1_pssl.yml
    (release 2.8); only the data roots, the backbone URL and the image size
    (``size`` for upstream's 256) differ."""
    return {
        'batch_size': 12, 'iters': 133450,
        'train_dataset': {
            'type': 'PSSLDataset', 'imagenet_root': imagenet_root, 'pssl_root': pssl_root,
            'transforms': [
                {'type': 'ResizeByShort', 'short_size': size},
                {'type': 'ResizeStepScaling', 'min_scale_factor': 0.5, 'max_scale_factor': 2.0,
                 'scale_step_size': 0},
                {'type': 'RandomPaddingCrop', 'crop_size': [size, size], 'label_padding_value': 1001},
                {'type': 'RandomHorizontalFlip'},
                {'type': 'RandomDistort', 'brightness_range': 0.2, 'contrast_range': 0.2,
                 'saturation_range': 0.2},
                {'type': 'Normalize'}],
            'mode': 'train'},
        'optimizer': {'type': 'SGD', 'momentum': 0.9, 'weight_decay': 5.0e-4},
        'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01, 'end_lr': 0, 'power': 0.9},
        'model': {'type': 'PPLiteSeg',
                  'backbone': {'type': 'STDC1', 'relative_lr': 0.1, 'pretrained': pretrained},
                  'arm_out_chs': [32, 64, 128], 'seg_head_inter_chs': [32, 64, 64],
                  'pretrained': None, 'num_classes': 1001},
        'loss': {'types': [{'type': 'CrossEntropyLoss', 'weight': UPSTREAM_WEIGHT}], 'coef': [1, 1, 1]},
    }


def test_upstream_pssl_config_trains_unchanged(tmp_path, toy_pssl):
    """Upstream's PSSLDataset, transforms, optimizer, scheduler, loss and a
    ``pretrained:`` URL to a .tar.gz (served on 127.0.0.1) train 2 iterations."""
    import contextlib
    import functools
    import http.server
    import tarfile
    import threading

    import paddle
    served = tmp_path / 'served'
    (served / 'PP_STDCNet1').mkdir(parents=True)
    # 20 of STDC1's 145 tensors: the others stay random (fewer than a tenth is refused)
    from paddleseg.models.backbones import STDC1
    first = 'features.0.conv.weight'
    partial = dict(list(STDC1().state_dict().items())[:20])
    assert first in partial
    paddle.save(partial, str(served / 'PP_STDCNet1' / 'model.pdparams'))
    with tarfile.open(served / 'PP_STDCNet1.tar.gz', 'w:gz') as tar:
        tar.add(served / 'PP_STDCNet1', arcname='PP_STDCNet1')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with contextlib.ExitStack() as stack:
        stack.callback(server.server_close)
        url = f'http://127.0.0.1:{server.server_address[1]}/PP_STDCNet1.tar.gz'
        cfg = _yml(tmp_path, 'pp_liteseg_stdc1_pssl.yml', _upstream_pp_liteseg_stdc1(
            toy_pssl['imagenet_root'], toy_pssl['pssl_root'], url, 64))
        env = dict(os.environ, PYTHONPATH=REPO, SEG_HOME=str(tmp_path / 'seg_home'))
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, 'tools', 'train.py'), '-c', cfg, '--iters', '2',
             '--batch_size', '2', '--save_dir', str(tmp_path / 'out'), '--log_iters', '1', '--seed', '0'],
            capture_output=True, text=True, timeout=600, cwd=str(tmp_path), env=env)
        server.shutdown()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert os.path.isfile(tmp_path / 'seg_home' / 'pretrained_model' / 'PP_STDCNet1' / 'model.pdparams')
    assert 'iter: 2/2' in result.stdout + result.stderr
    state = paddle.load(str(tmp_path / 'out' / 'iter_2' / 'model.pdparams'))
    assert f'backbone.{first}' in state and len(state) > 100


def test_builder_errors_behind_kwargs_name_the_key_path():
    from paddle_pssl.config.components import explain_build_error
    dic = {'model': {'type': 'M', 'backbone': {'type': 'B', 'depht': 3}}}
    wrapped = RuntimeError("Tried to create a M object, but the operation has failed.\nThe error "
                           "message is: \nB.__init__() got an unexpected keyword argument 'depht'")
    assert str(explain_build_error(wrapped, dic, 'c.yml')) == \
        'c.yml: model.backbone.depht: unknown argument of B'
    assert explain_build_error(RuntimeError('something else'), dic, 'c.yml') is None


def test_opts_take_yaml_flow_lists_and_mappings():
    from paddle_pssl.config import parse_opt
    assert parse_opt('a.t=[{type: Resize, target_size: [32, 32]}, {type: Normalize}]') == (
        ['a', 't'], [{'type': 'Resize', 'target_size': [32, 32]}, {'type': 'Normalize'}])
    assert parse_opt('a={x: 1, y: [2]}') == (['a'], {'x': 1, 'y': [2]})
    assert parse_opt('a=[1, 2]') == (['a'], [1, 2]) and parse_opt('lr=1e-3') == (['lr'], 0.001)
    # a flow value the shell split at its spaces is joined again
    assert apply_opts({}, ['t=[{type:', 'Resize,', 'target_size:', '[8,', '8]}]', 'n=2']) == {
        't': [{'type': 'Resize', 'target_size': [8, 8]}], 'n': 2}
    with pytest.raises(PSSLError, match=r"^--opts a\.t: '\[\{type: Resize' is not a valid YAML list"):
        parse_opt('a.t=[{type: Resize')
