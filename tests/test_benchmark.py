"""A tiny version of the whole benchmark pipeline, through the project's CLIs."""
import json
import os

import paddle
import pytest
import yaml

from paddle_pssl.benchmark import run_benchmark
from paddle_pssl.benchmark.common import INITS
from paddle_pssl.config import load_yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp('bench')
    cfg = load_yaml(os.path.join(REPO, 'configs', 'benchmark', 'tiny.yml'))
    run_benchmark(cfg, str(out), log=lambda *a: None)
    return out


def test_table_has_every_row_and_valid_mious(results):
    res = json.load(open(results / 'results.json'))
    rows = {r['key']: r['label'] for r in res['config']['inits']}
    assert set(INITS) <= set(rows) and {'d_exact', 'e_shuffled', 'eroded_0.5', 'o_objectness'} <= set(rows)
    assert set(res['finetune']) == set(rows)
    base = {r['seed']: r['miou'] for r in res['finetune']['b_classifier_backbone']['runs']}
    for key, row in res['finetune'].items():
        assert 0.0 <= row['miou_mean'] <= 1.0 and [r['seed'] for r in row['runs']] == [0, 1]
        # every row but the baseline is paired with it, seed by seed
        if key != 'b_classifier_backbone':
            assert row['paired']['per_seed'] == pytest.approx([r['miou'] - base[r['seed']] for r in row['runs']])
    groups = res['pseudo_labels']['by_group']
    for name in ('ensemble consensus', 'explainer cam', 'explainer gradcam', 'explainer smoothgrad',
                 'explainer lime', 'classifier resnet18_vd', 'classifier mobilenetv3_small',
                 'resnet18_vd/cam', 'mobilenetv3_small/gradcam', 'ensemble consensus, otsu',
                 'ensemble consensus, mean x1.5', 'ensemble consensus without lime'):
        assert name in groups, name
    for g in groups.values():
        assert 0.0 <= g['miou'] <= 1.0 and 0.0 <= g['fg_iou'] <= 1.0
    table = open(results / 'results.md').read()
    for label in rows.values():
        assert label in table
    assert 'chance' in table and (results / 'figure.png').stat().st_size > 10000


def test_pairs_between_rows_are_paired_by_seed(results):
    res = json.load(open(results / 'results.json'))
    ft = res['finetune']
    assert [d['rows'] for d in res['pairs']] == [
        ['c_pssl_class_weighted', 'e_shuffled'], ['d_exact', 'e_shuffled'],
        ['d_exact', 'c_pssl_class_weighted'], ['c_pssl_class_weighted', 'o_objectness']]
    for d in res['pairs']:
        x, y = (ft[k]['runs'] for k in d['rows'])
        assert d['per_seed'] == pytest.approx([a['miou'] - b['miou'] for a, b in zip(x, y)])
    table = open(results / 'results.md').read()
    assert '| (c) − (e) |' in table and '| (c) − (o) |' in table


def test_pretraining_seeds_and_label_spaces(results):
    """Every labelled row is pre-trained at each pre-training seed, fine-tuning
    seed i starts from pre-training seed i, and the objectness row trains a
    2-output head on (c)'s store while (c) trains the compact 3 + 1."""
    for seed in (0, 1):
        for name in ('generated', 'exact', 'shuffled', 'generated_objectness'):
            assert (results / 'pretrain' / f'{name}_seed{seed}' / 'iter_6' / 'model.pdparams').is_file()
        ft_cfg = yaml.safe_load(open(results / 'finetune' / f'c_pssl_class_weighted_seed{seed}.yml'))
        assert ft_cfg['model']['pretrained'].endswith(f'generated_seed{seed}/iter_6/model.pdparams')
    for name, outputs in (('generated_seed0', 4), ('generated_objectness_seed0', 2)):
        record = json.load(open(results / 'pretrain' / name / 'label_space.json'))
        assert record['num_classes'] == outputs
        weights = paddle.load(str(results / 'pretrain' / name / 'iter_6' / 'model.pdparams'))
        assert weights['head.decoder.conv.weight'].shape[0] == outputs
    obj = yaml.safe_load(open(results / 'pretrain' / 'generated_objectness_seed0.yml'))
    assert obj['train_dataset']['label_space'] == 'objectness'
    assert obj['train_dataset']['pssl_root'].endswith('labels')


def test_report_gives_each_stage_wall_and_cpu_seconds(results):
    res = json.load(open(results / 'results.json'))
    stages = ('data', 'classifiers', 'pseudo labels', 'PSSL pre-training', 'fine-tuning')
    for stage in stages:
        assert res['timings_s'][stage] >= 0 and res['stage_cpu_s'][stage]['cpu_s'] >= 0
    assert res['stage_cpu_s']['fine-tuning']['cpu_s'] > 0 and res['stage_cpu_s']['fine-tuning']['jobs'] > 0
    table = open(results / 'results.md').read()
    assert '| stage | wall s | CPU s' in table and '| PSSL pre-training |' in table


def test_label_sources_ceiling_floor_and_degraded(results):
    res = json.load(open(results / 'results.json'))
    src = res['label_sources']
    assert src['exact']['miou'] == pytest.approx(1.0)
    assert src['shuffled']['miou'] < 0.6
    assert src['erode_0.5']['miou'] == pytest.approx(0.5, abs=0.03) and src['erode_0.5']['strength'] > 0
    assert src['generated']['miou'] == pytest.approx(res['pseudo_labels']['store']['miou'])
    # four label sources (generated, exact, shuffled, eroded): a dose-response line and its figure
    assert 'Dose-response over' in open(results / 'results.md').read()
    assert (results / 'results_dose_response.png').stat().st_size > 5000


def test_label_efficiency_rows(results):
    res = json.load(open(results / 'results.json'))
    sizes = res['label_efficiency']
    assert sorted(sizes, key=int) == ['3', '6']
    assert set(sizes['3']) == {'b_classifier_backbone', 'd_exact'} and 'paired' in sizes['3']['d_exact']
    # the smaller sizes' lists live beside the set, whose folder is the main job's
    assert (results / 'data' / 'target_subsets' / 'train_n3.txt').read_text().splitlines() == \
        (results / 'data' / 'target' / 'train.txt').read_text().splitlines()[:3]
    assert not list((results / 'data' / 'target').glob('train_n3.txt'))
    assert 'Label efficiency: 3 labelled target images' in open(results / 'results.md').read()


def test_pseudo_labels_beat_chance(results):
    res = json.load(open(results / 'results.json'))
    chance = res['pseudo_labels']['chance']['miou']
    assert res['pseudo_labels']['store']['miou'] > chance + 0.03
    best = max(g['miou'] for g in res['pseudo_labels']['by_group'].values())
    assert best > chance + 0.1
    # the store the generator wrote scores the same as the consensus scored in flight
    assert res['pseudo_labels']['store']['miou'] == pytest.approx(
        res['pseudo_labels']['by_group']['ensemble consensus']['miou'], abs=1e-9)


def test_runs_leave_labels_checkpoints_and_logs(results):
    assert (results / 'labels' / 'train.txt').is_file()
    assert (results / 'pretrain' / 'generated_pixel_weighted_seed0' / 'iter_6' / 'model.pdparams').is_file()
    assert (results / 'pretrain' / 'exact_seed0' / 'iter_6' / 'model.pdparams').is_file()
    assert (results / 'labels_exact' / 'train.txt').is_file()
    assert any(name.startswith('vdlrecords') for name in os.listdir(results / 'finetune' / 'a_random_seed0'))
    # finished jobs keep their weights and drop their optimizer states
    assert not list((results / 'pretrain').rglob('model.pdopt'))
    assert not list((results / 'finetune').rglob('model.pdopt'))


def test_no_rows_of_a_kind_is_no_rows():
    """A config without a random-init row (e.g. dose_response.yml) fine-tunes
    no row early: an empty selection is not 'all rows'."""
    from paddle_pssl.benchmark.run import Benchmark
    bench = Benchmark.__new__(Benchmark)
    bench.inits = [{'key': 'b', 'init': 'backbone'}]
    assert bench.init_overrides([]) == {}


def test_fingerprint_follows_config_content(tmp_path):
    from paddle_pssl.benchmark.jobs import Job, fingerprint
    weights = tmp_path / 'w.pdparams'
    weights.write_bytes(b'\x00' * 8)
    cfg = tmp_path / 'a.yml'
    cfg.write_text(f'model: {{pretrained: {weights}}}\n')
    job = Job([['tools/train.py', '-c', str(cfg), '--save_dir', str(tmp_path / 'run')]])
    first = fingerprint(job)
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'model.pdparams').write_bytes(b'out')   # its own output: not an input
    assert fingerprint(job) == first
    weights.write_bytes(b'\x01' * 8)                             # a weight file the config names
    assert fingerprint(job) != first


def test_resume_reuses_finished_jobs_and_reruns_missing_ones(results):
    """Last in this file: it re-runs one fine-tuning inside the shared run."""
    import shutil
    cfg = load_yaml(os.path.join(REPO, 'configs', 'benchmark', 'tiny.yml'))
    before = json.load(open(results / 'results.json'))
    lines = []
    run_benchmark(cfg, str(results), log=lines.append, resume=True)
    reused = {line.split()[1].rstrip(':') for line in lines if line.endswith('done before, reused')}
    jobs = {name[:-len('.log')] for name in os.listdir(results / 'logs') if name.endswith('.log')}
    assert reused == jobs, sorted(jobs - reused)
    after = json.load(open(results / 'results.json'))
    assert after['finetune'] == before['finetune'] and after['pseudo_labels'] == before['pseudo_labels']

    shutil.rmtree(results / 'finetune' / 'a_random_seed0')       # as if killed before it finished
    lines = []
    run_benchmark(cfg, str(results), log=lines.append, resume=True)
    reused = {line.split()[1].rstrip(':') for line in lines if line.endswith('done before, reused')}
    assert jobs - reused == {'finetune_a_random_seed0'}
    assert (results / 'finetune' / 'a_random_seed0' / 'iter_6' / 'model.pdparams').is_file()


def test_pmm_and_mm_extensions_run_on_the_finished_run(results):
    """The PMM and M&M extensions end to end at tiny size, reusing the main
    run's jobs through --resume."""
    cfg = load_yaml(os.path.join(REPO, 'configs', 'benchmark', 'tiny.yml'))
    cfg['extensions'] = ['pmm', 'mm_tuning']
    cfg['extension_options'] = {'mm_tuning': {'iters': 8}}
    lines = []
    res = run_benchmark(cfg, str(results), log=lines.append, resume=True)
    ran = {name[:-len('.done')] for name in os.listdir(results / 'logs') if name.endswith('.done')}
    reused = {line.split()[1].rstrip(':') for line in lines if line.endswith('done before, reused')}
    assert all(name.startswith(('pmm_', 'mm_')) for name in ran - reused), sorted(ran - reused)
    pmm = res['extensions']['pmm']
    for key in ('consensus', 'pmm', 'pmm_no_cov', 'pmm_max', 'cycle'):
        assert 0.0 <= pmm['label_quality'][key]['miou'] <= 1.0, key
    assert set(pmm['target']) == {'c', 'puf', 'puf_beta2', 'cycle', 'pmm_labels'}
    for row in pmm['target'].values():
        assert 0.0 <= row['miou_mean'] <= 1.0
    mm = res['extensions']['mm_tuning']
    assert [row[0] for row in mm['rows']] == list(INITS.values())
    table = open(results / 'results.md').read()
    assert 'PMM: CoV smoothing' in table and 'Mix-and-Match tuning' in table


def test_one_run_at_a_time_per_folder(tmp_path):
    """A second run into a folder in use is refused before it touches anything."""
    from paddle_pssl.benchmark.jobs import folder_lock
    from paddle_pssl.utils.errors import PSSLError
    cfg = load_yaml(os.path.join(REPO, 'configs', 'benchmark', 'tiny.yml'))
    with folder_lock(str(tmp_path)):
        with pytest.raises(PSSLError, match='another benchmark run is using this folder'):
            run_benchmark(cfg, str(tmp_path), log=lambda *a: None)
    assert os.listdir(tmp_path) == ['.benchmark.lock']


def test_a_killed_run_stops_its_jobs(tmp_path):
    """SIGTERM to the benchmark ends the job processes it started too."""
    import signal
    import subprocess
    import sys
    import time
    out = str(tmp_path / 'bench')

    def jobs():   # processes whose command line names the run's folder, the benchmark aside
        found = []
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    cmd = f.read().decode(errors='replace')
            except OSError:
                continue
            if out in cmd and int(pid) != proc.pid:
                found.append(pid)
        return found

    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'tools', 'benchmark_pssl.py'),
                             '-c', os.path.join(REPO, 'configs', 'benchmark', 'tiny.yml'), '--out', out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not jobs():
        assert proc.poll() is None and time.time() < deadline, 'no job started'
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    time.sleep(1)
    assert jobs() == []
