"""TIPC: the shipped scripts run the lite chain (PSSL pre-train -> fine-tune ->
eval -> export -> Paddle Inference) with every step reported as a success, and
the exported model predicts what the dynamic-graph model predicts."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

from paddle_pssl.deploy.export import export_model
from paddle_pssl.deploy.infer import Predictor
from paddle_pssl.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = 'deeplabv3_resnet50_vd'   # the fastest of the three here (~75 s for the chain)
TXT = f'test_tipc/configs/{MODEL}/train_infer_python.txt'
FINETUNE_YML = f'test_tipc/configs/{MODEL}/{MODEL}_finetune_lite.yml'
RUN_DIR = f'test_tipc/output/{MODEL}/norm_train_gpus_-1_autocast_fp32'
# pre-train, fine-tune, eval, export, then inference for mkldnn True|False x threads 1|2
EXPECTED_TOOLS = ['train.py', 'train.py', 'val.py', 'export.py'] + ['infer.py'] * 4


@pytest.fixture(scope='module')
def tipc_root(tmp_path_factory):
    """The repository's test_tipc/ copied beside links to tools/, configs/ and
    paddle_pssl/: the scripts run as in the repository, but their data and
    outputs land in a temporary folder, not in the working tree."""
    root = tmp_path_factory.mktemp('tipc_repo')
    shutil.copytree(os.path.join(REPO, 'test_tipc'), root / 'test_tipc',
                    ignore=shutil.ignore_patterns('data', 'output'))
    for name in ('tools', 'configs', 'paddle_pssl'):
        os.symlink(os.path.join(REPO, name), root / name)
    return root


@pytest.fixture(scope='module')
def lite_run(tipc_root):
    env = dict(os.environ, PYTHON=sys.executable)
    prepare = subprocess.run(['bash', 'test_tipc/prepare.sh', TXT, 'lite_train_lite_infer'],
                             cwd=tipc_root, env=env, capture_output=True, text=True, timeout=180)
    assert prepare.returncode == 0, prepare.stdout + prepare.stderr
    run = subprocess.run(['bash', 'test_tipc/test_train_inference_python.sh', TXT,
                          'lite_train_lite_infer'],
                         cwd=tipc_root, env=env, capture_output=True, text=True, timeout=600)
    return tipc_root, run


def _status_lines(text):
    text = re.sub(r'\x1b\[[0-9;]*m', '', text)
    return [line.strip() for line in text.splitlines() if line.strip().startswith('Run ')]


def test_lite_chain_reports_every_step_as_successful(lite_run):
    root, run = lite_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = _status_lines(run.stdout)
    assert len(lines) == len(EXPECTED_TOOLS), lines
    for line, tool in zip(lines, EXPECTED_TOOLS):
        assert line.startswith('Run successfully with command - '), line
        assert line.endswith('!') and f'tools/{tool}' in line, line
        assert sys.executable in line, line   # the Python that runs the tests
    with open(root / f'test_tipc/output/{MODEL}/results_python.log') as f:
        assert _status_lines(f.read()) == lines


def test_finetune_starts_from_the_pretrained_checkpoint(lite_run):
    root, _ = lite_run
    with open(root / RUN_DIR / 'train.log') as f:
        log = f.read()
    pretrained = f'test_tipc/output/{MODEL}/pssl_pretrain_gpus_-1_autocast_fp32/iter_5/model.pdparams'
    assert f'Loading pretrained model from {pretrained}' in log
    assert os.path.isfile(root / pretrained)
    # shapes print as [1001, ...] on Paddle 2.6, paddle.Size([1001, ...]) on 3.x
    skipped = re.findall(r'\[SKIP\] Shape of pretrained params (\S+) .*Pretrained: (?:paddle\.Size\()?\[1001', log)
    assert sorted(skipped) == ['head.cls.bias', 'head.cls.weight'], skipped
    assert 'There are 310/312 variables loaded into DeepLabV3.' in log


def test_inference_saves_the_same_masks_in_every_cpu_setting(lite_run):
    root, _ = lite_run
    out = root / f'test_tipc/output/{MODEL}'
    result_dirs = sorted(d for d in os.listdir(out) if d.startswith('python_infer_cpu_')
                         and d.endswith('_results'))
    assert len(result_dirs) == 4, result_dirs
    masks = {}
    for d in result_dirs:
        names = sorted(os.listdir(out / d / 'images'))
        assert names == [f'val_{i:04d}.png' for i in range(4)]
        masks[d] = [np.asarray(Image.open(out / d / 'images' / n))
                    for n in names]
        assert all(m.shape == (64, 80) for m in masks[d])   # the images' own size
    first = masks[result_dirs[0]]
    for d in result_dirs[1:]:
        for a, b in zip(first, masks[d]):
            np.testing.assert_array_equal(a, b)


def _dynamic_model(root, checkpoint):
    from paddleseg.cvlibs import SegBuilder
    from paddleseg.utils import utils
    model = SegBuilder(load_config(str(root / FINETUNE_YML))).model
    utils.load_entire_model(model, checkpoint)
    model.eval()
    return model


def test_exported_model_predicts_what_the_dynamic_model_predicts(lite_run, tmp_path):
    root, run = lite_run
    assert run.returncode == 0
    checkpoint = str(root / RUN_DIR / 'best_model' / 'model.pdparams')
    model = _dynamic_model(root, checkpoint)
    images = [str(root / f'test_tipc/data/pssl_lite/target/images/val_{i:04d}.jpg')
              for i in range(4)]

    # the chain's own export (output_op argmax), with and without oneDNN: identical labels
    for mkldnn in (False, True):
        predictor = Predictor(str(root / RUN_DIR), enable_mkldnn=mkldnn, cpu_threads=2)
        for path in images:
            x = predictor.preprocess(path)['img'][None]
            with paddle.no_grad():
                expected = model(paddle.to_tensor(x))[0].argmax(axis=1).numpy()
            np.testing.assert_array_equal(predictor.run(x), expected)

    # output_op none: the logits themselves; an export: block names deploy.yaml's transforms
    cfg = load_config(str(root / FINETUNE_YML))
    given = [{'type': 'Normalize', 'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5]}]
    cfg.dic['export'] = {'transforms': given}
    export_model(cfg, checkpoint, str(tmp_path / 'logits'), output_op='none')
    import yaml
    assert yaml.safe_load((tmp_path / 'logits' / 'deploy.yaml').read_text())['Deploy']['transforms'] == given
    exact = Predictor(str(tmp_path / 'logits'), ir_optim=False)
    fused = Predictor(str(tmp_path / 'logits'))   # the default: conv+bn fused, sums reordered
    for path in images:
        x = exact.preprocess(path)['img'][None]
        with paddle.no_grad():
            logits = model(paddle.to_tensor(x))[0].numpy()
        np.testing.assert_allclose(exact.run(x), logits, rtol=0, atol=1e-4)
        scale = float(np.abs(logits).max())
        np.testing.assert_allclose(fused.run(x), logits, rtol=0, atol=1e-4 * max(scale, 1.0))


def test_batched_prediction_matches_one_by_one(lite_run):
    root, _ = lite_run
    predictor = Predictor(str(root / RUN_DIR))
    images = [str(root / f'test_tipc/data/pssl_lite/target/images/{n}')
              for n in ('val_0000.jpg', 'val_0001.jpg', 'val_0002.jpg', 'val_0003.jpg')]
    one = dict(predictor.predict(images, batch_size=1))
    batched = dict(predictor.predict(images, batch_size=3))
    assert list(batched) == images
    for path in images:
        assert one[path].dtype == np.uint8 and one[path].shape == (64, 80)
        np.testing.assert_array_equal(one[path], batched[path])


def test_infer_cli_names_a_missing_model_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'infer.py'),
                             '--model_dir', str(tmp_path), '--image_path', str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f'error: {tmp_path}/deploy.yaml: deploy.yaml not found '
        '(export the model with tools/export.py first)')
