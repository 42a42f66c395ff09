"""The controlled end-to-end PSSL benchmark, through the project's own tools
and configs:

1. make a source classification set (exact masks kept aside) and a target
   segmentation set (``paddle_pssl.datasets.synthetic``);
2. train two small PaddleClas classifiers on the source set (``train_cls``);
3. generate pseudo labels with the ensemble (the generator, in label shards),
   scoring every explainer alone, every classifier alone and the consensus
   against the exact masks;
4. write the other label stores the rows name: the exact masks (d), the
   exact masks of other images (e), degraded masks, generator variants
   (``label_sources``), each scored against the exact masks;
5. pre-train DeepLabV3+-ResNet18_vd end to end on each row's store (class-
   or pixel-weighted), at each pre-training seed;
6. fine-tune every row of ``inits`` ((a) random init, (b) the classifier's
   backbone + random head, the pre-trained rows) at the same seeds, and at
   the label-efficiency sizes, and evaluate (``val``) on the held-out test
   split; every row is paired with the baseline by seed (:mod:`.stats`);
7. write <report_name>.md/.json and the figures.

Paddle computes on one thread here, so independent jobs (the classifiers, the
label shards, the pre-trainings, the fine-tuning runs) run as ``workers``
processes of the project's CLIs (``python -m paddle_pssl <tool>``, see
:mod:`.jobs`) at once; each job's log is under ``logs/``.
A finished job leaves ``logs/<job>.done`` with a fingerprint of its commands
and inputs, so ``--resume`` after a kill reruns only what did not finish or
whose inputs changed.
"""
import itertools
import json
import os
import shutil
import time


from ..config import load_yaml, merge_dicts, validate
from ..pseudo_labels.evaluate import IoUCounter, evaluate_store
from ..utils.errors import PSSLError
from .common import config_path, scaled, source_id, write_yaml
from .jobs import Job, folder_lock, job_done, run_jobs, tool
from .label_sources import chance_quality
from .report import read_examples
from .stats import collect_runs, pair_rows


class Benchmark:
    def __init__(self, cfg, out_dir, log=print, resume=False):
        self.cfg = validate('benchmark', cfg, 'benchmark config')
        self.out = os.path.abspath(out_dir)
        self.log = log
        self.resume = resume
        self.log_dir = os.path.join(self.out, 'logs')
        self.timings = {}
        self.cpu_s = {}   # job: CPU seconds of its processes
        self.results = {'config': self.cfg}
        self.finetuned_early = set()   # fine-tuning jobs already run beside the classifiers
        self.inits = [dict(row, init=row.get('init', 'pretrained')) for row in self.cfg['inits']]
        keys = [row['key'] for row in self.inits]
        if self.cfg['ceiling'] is None and 'd_exact' in keys:
            self.cfg['ceiling'] = 'd_exact'
        for role in ('baseline', 'ceiling'):
            if self.cfg[role] not in keys and not (role == 'ceiling' and self.cfg[role] is None):
                raise PSSLError(f"benchmark config: {role} {self.cfg[role]!r} is not a row of inits "
                                f"({', '.join(keys)})")
        if len(set(keys)) != len(keys):
            raise PSSLError(f"benchmark config: inits: a key appears twice ({', '.join(keys)})")
        if self.cfg['pairs'] is None:
            from ..config.schemas import DEFAULT_PAIRS
            self.pairs = [p for p in DEFAULT_PAIRS if set(p) <= set(keys)]
        else:
            self.pairs = self.cfg['pairs']
            for pair in self.pairs:
                for key in pair:
                    if key not in keys:
                        raise PSSLError(f"benchmark config: pairs: {key!r} is not a row of inits "
                                        f"({', '.join(keys)})")
        self.stage_cpu = {}   # stage: CPU seconds of its jobs and of this process
        self._stage_jobs = None

    def run_jobs(self, jobs):
        """:func:`run_jobs` with this run's workers, log folder and resume flag."""
        cpu = run_jobs(jobs, self.cfg['workers'], self.log_dir, self.resume, self.log)
        self.cpu_s.update(cpu)
        if self._stage_jobs is not None:
            self._stage_jobs.update(cpu)
        return cpu

    def jobs_done(self, jobs):
        """True when resuming and every one of ``jobs`` finished before."""
        return self.resume and all(job_done(name, job if isinstance(job, Job) else Job(job), self.log_dir)
                                   for name, job in jobs.items())

    def _step(self, name, fn):
        """Run one stage; record its wall seconds and its CPU seconds (its
        jobs', from their records when reused, plus this process's)."""
        self.log(f'[benchmark] {name} ...')
        start, own = time.time(), time.process_time()
        self._stage_jobs = {}
        value = fn()
        self.timings[name] = round(time.time() - start, 1)
        jobs = self._stage_jobs
        self.stage_cpu[name] = {'cpu_s': round(time.process_time() - own + sum(v or 0 for v in jobs.values()), 1),
                                'jobs': len(jobs), 'unrecorded': sum(v is None for v in jobs.values())}
        self._stage_jobs = None
        self.log(f'[benchmark] {name}: {self.timings[name]} s wall, {self.stage_cpu[name]["cpu_s"]} CPU s')
        return value

    # 1 ---------------------------------------------------------------
    def make_data(self):
        from ..datasets import synthetic
        s, t, scale = self.cfg['data']['source'], self.cfg['data']['target'], self.cfg['scale']
        data_dir = os.path.join(self.out, 'data')
        if os.path.isdir(data_dir):
            shutil.rmtree(data_dir)
        self.source = synthetic.make_source_set(
            os.path.join(data_dir, 'source'), s['num_classes'], scaled(s['images_per_class'], scale),
            s['image_size'], seed=self.cfg['seed'])
        self.train_sizes = sorted({scaled(n, scale) for n in self.cfg['finetune']['train_sizes'] or []})
        self.num_train = scaled(t['num_train'], scale)
        # twice the labelled images are always drawn (nested subsets, one test split), so
        # the label-efficiency sizes up to 2x use the very files of the main job and reuse its jobs
        self.target = synthetic.make_target_set(
            os.path.join(data_dir, 'target'), t['num_classes'], max([2 * self.num_train, *self.train_sizes]),
            scaled(t['num_test'], scale), t['image_size'], seed=self.cfg['seed'] + 1,
            train_subsets=[self.num_train])
        # the other sizes' lists live beside the set: the set's folder, which the
        # jobs' fingerprints hash, stays the same whatever sizes a config asks for
        self.target['train_subsets'].update(synthetic.write_train_subsets(
            self.target['train_path'], sorted(set(self.train_sizes) - {self.num_train}),
            os.path.join(data_dir, 'target_subsets')))
        self.target['train_path'] = self.target['train_subsets'][self.num_train]

    # 2 ---------------------------------------------------------------
    def train_classifiers(self):
        jobs, dirs = {}, {}
        for entry in self.cfg['classifiers']:
            save_dir = os.path.join(self.out, 'classifiers', entry['label'])
            iters = self.cfg['classifier_iters'] or entry.get('iters')
            argv = [*tool('train_cls'), '-c', config_path(entry['config']), '--save_dir', save_dir,
                    '--seed', str(self.cfg['seed']), '--use_vdl']
            if iters:
                argv += ['--iters', str(scaled(iters, self.cfg['scale']))]
            argv += ['--opts', f"train_dataset.image_root={self.source['image_root']}",
                     f"train_dataset.synsets={self.source['synsets']}"]
            jobs[f"classifier_{entry['label']}"] = [argv]
            dirs[entry['label']] = save_dir
        # random-init fine-tuning needs no classifier: it fills the cores the
        # shorter classifier jobs leave idle
        early, _ = self.finetune_jobs(self.init_overrides([r for r in self.inits if r['init'] == 'random']))
        self.run_jobs(dict(jobs, **early))
        self.finetuned_early = set(early)
        self.classifiers = []
        for entry in self.cfg['classifiers']:
            with open(os.path.join(dirs[entry['label']], 'train_cls.json')) as f:
                report = json.load(f)
            self.classifiers.append({
                'label': entry['label'], 'name': report['config']['model']['name'],
                'weights': report['weights'], 'num_classes': report['num_classes'],
                'input_size': report['config']['model']['input_size'],
                'output_stride': report['config']['model'].get('output_stride', 32),   # older reports: 32
                'iters': report['iters'],
                'train_accuracy': report.get('train_acc_eval'), 'val_accuracy': report.get('val_acc')})
        self.results['classifiers'] = self.classifiers

    # 3 ---------------------------------------------------------------
    def generate_labels(self, label_root=None, overrides=None, name='labels', config=None):
        """Run the generator over the source set into ``label_root`` (default
        ``labels/``, the main store, scored map by map; another root is a
        generator variant: ``config`` (default: the benchmark's) with
        ``overrides``, scored as a store only)."""
        from ..datasets.classification_set import list_source
        from ..pseudo_labels.generate import PseudoLabelGenerator
        main = label_root is None
        label_root = label_root or os.path.join(self.out, 'labels')
        gen_cfg = load_yaml(config_path(config or self.cfg['pseudo_labels']))
        gen_cfg = merge_dicts(gen_cfg, {
            'seed': self.cfg['seed'],
            'source': {'image_root': self.source['image_root'], 'synsets': self.source['synsets']},
            'output': {'pssl_root': label_root}})
        gen_cfg = merge_dicts(gen_cfg, self.cfg['pseudo_label_overrides'])
        gen_cfg = merge_dicts(gen_cfg, overrides or {})
        gen_cfg['classifiers'] = [
            {'name': c['name'], 'label': c['label'], 'weights': c['weights'],
             'num_classes': c['num_classes'], 'input_size': c['input_size'],
             'output_stride': c['output_stride']} for c in self.classifiers]
        cfg_path = write_yaml(os.path.join(self.out, 'configs', f"{'pseudo_labels' if main else name}.yml"),
                              gen_cfg)
        workers = max(int(self.cfg['workers']), 1)
        scores = [os.path.join(self.out, f'{name}_scores', f'shard{i}.json') for i in range(workers)]
        os.makedirs(os.path.dirname(scores[0]), exist_ok=True)
        jobs = {f'{name}_shard{i}': Job([['-m', 'paddle_pssl.benchmark.label_shard', cfg_path,
                                          self.source['gt_root'], f'{i}/{workers}', scores[i],
                                          str(self.cfg['examples'] if main and i == 0 else 0)]],
                                        outputs=[label_root, scores[i]])
                for i in range(workers)}
        if not self.jobs_done(jobs) and os.path.isdir(label_root):
            # shards score only what they write: all of them start again together
            shutil.rmtree(label_root)
        self.run_jobs(jobs)
        PseudoLabelGenerator(gen_cfg, cfg_path).finalize()
        if not main:
            return
        self.label_root, self.label_cfg = label_root, gen_cfg
        counters, written, dropped = {}, 0, {}
        for path in scores:
            with open(path) as f:
                shard = json.load(f)
            written += shard['counts']['written']
            dropped.update(shard['dropped'])
            for name, g in shard['groups'].items():
                counters.setdefault(name, IoUCounter()).add_counts(g)
        rule = validate('generator', gen_cfg, cfg_path)['consensus']
        gt_root = self.source['gt_root']
        store_quality = evaluate_store(self.label_root, gt_root)
        chance = chance_quality(list_source(self.source['image_root'], None, self.source['synsets'])[0],
                                gt_root)
        self.results['pseudo_labels'] = {
            'rule': [rule['threshold'], rule['value']], 'method': rule['method'],
            'written': written, 'explainers_not_applicable': dropped,
            'by_group': {k: {'miou': v.result()['miou'], 'fg_iou': v.result()['fg_iou']}
                         for k, v in counters.items()},
            'store': {'miou': store_quality['miou'], 'fg_iou': store_quality['fg_iou']},
            'chance': chance}
        self.examples = read_examples(
            scores[0][:-5] + '.examples.npz', self.source['image_root'],
            sorted(k.split(' ', 1)[1] for k in counters if k.startswith('explainer ')))

    # 4 ---------------------------------------------------------------
    def backbone_init(self):
        import paddle
        from paddleseg.models.backbones import ResNet18_vd

        from ..classifiers.convert import save_backbone_from_classifier
        chosen = [c for c in self.classifiers if c['label'] == self.cfg['backbone_classifier']]
        if not chosen:
            raise PSSLError(f"backbone_classifier {self.cfg['backbone_classifier']!r} was not trained")
        path = os.path.join(self.out, 'backbone_from_classifier.pdparams')
        paddle.disable_static()
        save_backbone_from_classifier(chosen[0]['weights'], ResNet18_vd(output_stride=8), path)
        self.backbone_weights = path

    def _job(self, base, overrides, save_dir, iters, seed, batch_size, evaluate=False):
        """Commands (``train``, then ``val``) for one training run."""
        cfg_path = write_yaml(save_dir + '.yml', merge_dicts({'_base_': config_path(base)}, overrides))
        weights = os.path.join(save_dir, f'iter_{iters}', 'model.pdparams')
        commands = [[*tool('train'), '-c', cfg_path, '--batch_size', str(batch_size), '--iters', str(iters),
                     '--save_interval', str(iters), '--log_iters', str(max(iters // 10, 1)), '--use_vdl',
                     '--seed', str(seed), '--save_dir', save_dir]]
        if evaluate:
            commands.append([*tool('val'), '-c', cfg_path, '--model_path', weights,
                             '--batch_size', str(self.cfg['finetune']['eval_batch_size']),
                             '--save_json', save_dir + '.metrics.json'])
        return Job(commands), weights

    # 5 ---------------------------------------------------------------
    def label_stores(self):
        """The store of every label source a pretrained row names: the
        generator's (``labels/``), generator variants, and stores made from
        the exact masks (``label_sources``); each scored against the exact masks."""
        from .label_sources import build_store
        self.stores, quality = {}, {}
        for row in self.inits:
            spec = row.get('labels')
            if not spec or source_id(row) in self.stores:
                continue
            sid = source_id(row)
            if sid == 'generated':
                root = self.label_root
            elif spec['kind'] == 'generated':
                root = os.path.join(self.out, f'labels_{sid}')
                self.generate_labels(root, spec.get('overrides'), f'labels_{sid}', spec.get('config'))
            else:
                root = os.path.join(self.out, f'labels_{sid}')
                build_store(root, spec, self.source, self.cfg['seed'])
            self.stores[sid] = root
            q = evaluate_store(root, self.source['gt_root'])
            quality[sid] = {'miou': q['miou'], 'fg_iou': q['fg_iou'], 'store': root}
            with open(os.path.join(root, 'manifest.json')) as f:
                made = json.load(f).get('made_from') or {}
            if 'strength' in made:
                quality[sid]['strength'] = made['strength']
        self.results['label_sources'] = quality

    def pretrain_seeds(self):
        return self.cfg['pretrain']['seeds'] or [self.cfg['seed']]

    def pretrain_seed_of(self, seed):
        """The pre-training seed the fine-tuning ``seed`` starts from."""
        seeds = self.pretrain_seeds()
        return seeds[self.cfg['seeds'].index(seed) % len(seeds)] if seed in self.cfg['seeds'] else seeds[0]

    def pretrain(self):
        iters = scaled(self.cfg['pretrain']['iters'], self.cfg['scale'])
        self.pretrained, jobs = {}, {}
        for row in self.inits:
            if row['init'] != 'pretrained':
                continue
            sid, use_conf, space = source_id(row), bool(row.get('use_confidence')), row.get('label_space')
            dataset = {'imagenet_root': self.source['image_root'], 'pssl_root': self.stores[sid],
                       'use_confidence': use_conf}
            if space:
                dataset['label_space'] = space
            for p in self.pretrain_seeds():
                name = f"{sid}{'_pixel_weighted' if use_conf else ''}{f'_{space}' if space else ''}_seed{p}"
                if f'pretrain_{name}' not in jobs:
                    jobs[f'pretrain_{name}'], weights = self._job(
                        self.cfg['pretrain']['config'],
                        {'model': {'backbone': {'pretrained': self.backbone_weights}},
                         'train_dataset': dataset},
                        os.path.join(self.out, 'pretrain', name), iters, p, self.cfg['pretrain']['batch_size'])
                self.pretrained.setdefault(row['key'], {})[p] = os.path.join(
                    self.out, 'pretrain', name, f'iter_{iters}', 'model.pdparams')
        self.run_jobs(jobs)

    # 6 ---------------------------------------------------------------
    def target_overrides(self, train_path=None):
        """Overrides that point a fine-tuning config at the target set."""
        data = {'dataset_root': self.target['dataset_root'], 'num_classes': self.target['num_classes']}
        return {'model': {'num_classes': self.target['num_classes']},
                'train_dataset': dict(data, train_path=train_path or self.target['train_path']),
                'val_dataset': dict(data, val_path=self.target['test_path'])}

    def init_overrides(self, rows=None):
        """{row key: model overrides, or seed -> overrides} of the rows."""
        out = {}
        for row in self.inits if rows is None else rows:
            if row['init'] == 'random':
                out[row['key']] = {}
            elif row['init'] == 'backbone':
                out[row['key']] = {'model': {'backbone': {'pretrained': self.backbone_weights}}}
            else:
                weights = self.pretrained[row['key']]
                out[row['key']] = lambda seed, w=weights: {
                    'model': {'pretrained': w[self.pretrain_seed_of(seed)]}}
        return out

    def finetune_jobs(self, inits, out=None, prefix='', train_size=None):
        """({job name: Job}, {(init, seed): metrics path}) of fine-tuning from
        each of ``inits`` ({key: model overrides, or a function of the seed})
        at every seed, under ``<out>/finetune`` (``out`` default: this run's
        folder), on ``train_size`` labelled images (default: the main size;
        the batch size is at most that); job names get ``prefix`` (an
        extension's own)."""
        iters = scaled(self.cfg['finetune']['iters'], self.cfg['scale'])
        size = '' if train_size in (None, self.num_train) else f'_n{train_size}'
        base = self.target_overrides(self.target['train_subsets'][train_size] if size else None)
        jobs, metrics = {}, {}
        for seed, (key, override) in itertools.product(self.cfg['seeds'], inits.items()):
            save_dir = os.path.join(out or self.out, 'finetune', f'{key}{size}_seed{seed}')
            override = override(seed) if callable(override) else override
            # a batch never holds more than the labelled images (PaddleSeg drops the last partial batch)
            jobs[f'{prefix}finetune_{key}{size}_seed{seed}'], _ = self._job(
                self.cfg['finetune']['config'], merge_dicts(base, override), save_dir, iters, seed,
                min(self.cfg['finetune']['batch_size'], train_size or self.num_train), evaluate=True)
            metrics[(key, seed)] = save_dir + '.metrics.json'
        return jobs, metrics

    def finetune(self):
        jobs, metrics = self.finetune_jobs(self.init_overrides())
        sized = {}
        size_rows = [r for r in self.inits if self.cfg['finetune']['size_inits'] is None
                     or r['key'] in self.cfg['finetune']['size_inits']]
        for n in self.train_sizes:
            if n != self.num_train:
                more, sized[n] = self.finetune_jobs(self.init_overrides(size_rows), train_size=n)
                jobs.update(more)
        self.run_jobs({name: job for name, job in jobs.items() if name not in self.finetuned_early})
        self.results['finetune'] = collect_runs(metrics, self.cfg['baseline'])
        self.results['pairs'] = pair_rows(self.results['finetune'], self.pairs)
        if self.train_sizes:
            sized[self.num_train] = {k: v for k, v in metrics.items() if k[0] in {r['key'] for r in size_rows}}
            self.results['label_efficiency'] = {
                n: collect_runs(sized[n], self.cfg['baseline']) for n in sorted(sized)}

    def run_extension(self, name):
        """``paddle_pssl.benchmark.ext_<name>.run(benchmark)`` returns
        ``{'title', 'header', 'rows', 'note'}`` (a table for results.md); it may
        reuse this run's data, classifiers, labels and checkpoints and run jobs
        with :meth:`run_jobs` and :meth:`_job`."""
        import importlib
        try:
            module = importlib.import_module(f'paddle_pssl.benchmark.ext_{name}')
        except ModuleNotFoundError:
            raise PSSLError(f'benchmark extension {name!r}: no paddle_pssl/benchmark/ext_{name}.py')
        self.results.setdefault('extensions', {})[name] = module.run(self)

    def run(self):
        os.makedirs(self.out, exist_ok=True)
        started = time.time()
        self._step('data', self.make_data)
        self._step('classifiers', self.train_classifiers)
        self._step('pseudo labels', self.generate_labels)
        self._step('backbone from classifier', self.backbone_init)
        self._step('label sources', self.label_stores)
        self._step('PSSL pre-training', self.pretrain)
        self._step('fine-tuning', self.finetune)
        for name in self.cfg['extensions']:
            self._step(f'extension {name}', lambda n=name: self.run_extension(n))
        self.timings['total'] = round(time.time() - started, 1)
        self.results['timings_s'] = self.timings
        self.results['stage_cpu_s'] = self.stage_cpu
        self.results['job_cpu_s'] = self.cpu_s
        from .report import write_report
        write_report(self.results, self.examples, self.out)
        return self.results


def run_benchmark(cfg, out_dir, log=print, resume=False):
    """Run the benchmark into ``out_dir``; with ``resume``, jobs that finished
    in an earlier run there with the same inputs are reused (see :func:`run_jobs`).
    One run at a time per folder (:func:`.jobs.folder_lock`)."""
    bench = Benchmark(cfg, out_dir, log, resume)
    os.makedirs(bench.out, exist_ok=True)
    with folder_lock(bench.out):
        return bench.run()
