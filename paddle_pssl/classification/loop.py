"""The classifier training loop behind :func:`.train.train_classifier`: data,
model and optimizer set-up, resume, the iterations, logging, checkpoints and
the result file.

The model-specific pieces (building the classifier, its losses, accuracy,
the FS loss) live in :mod:`.train` and come in as a :data:`ModelFns`, so this
module does not import that one.
"""
import json
import math
import os
import time
from collections import namedtuple

import numpy as np

import paddle

from ..utils.checkpoint import PARAMS, Checkpoints, read_checkpoint, require_complete, require_fit
from ..utils.errors import PSSLError
from ..utils.io import atomic_paddle_save, atomic_write_text, json_default
from ..utils.nonfinite import NonFiniteLoss
from .dataset import eval_batches, iteration_rng, load_classification_set, split_train_val, \
    train_batches

__all__ = ['ModelFns', 'run_training', 'uses_cam', 'RESULT_FILE', 'log', 'write_json']

RESULT_FILE = 'train_cls.json'

# build_model(cfg, num_classes, config_path) -> classifier;
# compute_losses(clf, batch, labels, loss_cfg, num_classes, generator, fs_loss) -> (losses, logits);
# evaluate_accuracy(clf, images, labels) -> float or None; make_fs_loss(loss_cfg) -> FS loss
ModelFns = namedtuple('ModelFns', 'build_model compute_losses evaluate_accuracy make_fs_loss')

_VDL_TAGS = (('loss', 'Train/loss'), ('loss_gap', 'Train/loss_gap'), ('loss_is', 'Train/loss_is'),
             ('loss_fs', 'Train/loss_fs'), ('acc', 'Train/acc'), ('lr', 'Train/lr'))


def uses_cam(cfg):
    return bool(cfg['loss']['importance_sampling'] or cfg['loss']['feature_similarity'])


def log(message):
    from paddleseg.utils import logger
    logger.info(message)


def write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=1, default=json_default))


def _iteration_seed(seed, iteration):
    return int(np.random.SeedSequence([int(seed), int(iteration), 3]).generate_state(1)[0])


def make_optimizer(cfg, model, iters):
    """The configured optimizer and its lr schedule (stepped once per iteration)."""
    opt = cfg['optimizer']
    lr = float(opt['lr'])
    decay_iters = max(1, iters - int(opt['warmup_iters']))
    if opt['decay'] == 'cosine':
        schedule = paddle.optimizer.lr.CosineAnnealingDecay(lr, T_max=decay_iters,
                                                            eta_min=float(opt['end_lr']))
    elif opt['decay'] == 'poly':
        schedule = paddle.optimizer.lr.PolynomialDecay(lr, decay_steps=decay_iters,
                                                       end_lr=float(opt['end_lr']),
                                                       power=float(opt['power']))
    else:
        schedule = paddle.optimizer.lr.PolynomialDecay(lr, decay_steps=decay_iters,
                                                       end_lr=lr, power=1.0)
    if int(opt['warmup_iters']) > 0:
        schedule = paddle.optimizer.lr.LinearWarmup(schedule, int(opt['warmup_iters']),
                                                    start_lr=lr * 0.1, end_lr=lr)
    wd = float(opt['weight_decay'])
    params = model.parameters()
    if opt['type'] == 'momentum':
        optimizer = paddle.optimizer.Momentum(schedule, momentum=float(opt['momentum']),
                                              use_nesterov=bool(opt['nesterov']),
                                              weight_decay=wd or None, parameters=params)
    elif opt['type'] == 'adam':
        optimizer = paddle.optimizer.Adam(schedule, weight_decay=wd or None,
                                          parameters=params)
    else:
        optimizer = paddle.optimizer.AdamW(schedule, weight_decay=wd, parameters=params)
    return optimizer, schedule


def run_training(cfg, save_dir, fns, use_vdl, log_every, resume, config_path):
    """Train with the merged config ``cfg``; -> the result dict, also written
    to ``<save_dir>/train_cls.json`` (see :func:`.train.train_classifier`)."""
    if resume:
        require_complete(resume, with_state=True, flag='--resume')  # before loading anything
    run = _Training(cfg, save_dir, fns, log_every, config_path)
    run.load_data()
    run.build()
    checkpoints = Checkpoints(save_dir, max(int(cfg['keep_checkpoint_max']), 1), with_state=True)
    if resume:
        run.resume_from(resume)
    else:
        checkpoints.refuse_earlier_run('--resume')
    writer = None
    if use_vdl:
        from visualdl import LogWriter
        writer = LogWriter(logdir=save_dir)
    run.announce()
    t_start = time.time()
    batches = run.batches()
    try:
        for it in range(run.start, run.iters):
            record = run.step(it, next(batches))
            if record is not None:   # None: a batch skipped for a non-finite loss
                run.report(it, record, writer, t_start)
            if cfg['save_interval'] and (it + 1) % int(cfg['save_interval']) == 0:
                checkpoints.save(it + 1, run.model.state_dict(), run.optimizer.state_dict(),
                                 run.state_at(it + 1))
    finally:
        batches.close()   # stops the reader processes
    return run.finish(time.time() - t_start, writer, resume)


class _Training:
    """The state of one classifier run, in the order the steps need it."""

    def __init__(self, cfg, save_dir, fns, log_every, config_path):
        self.cfg, self.save_dir, self.fns, self.config_path = cfg, save_dir, fns, config_path
        self.seed = int(cfg['seed'])
        self.input_size = int(cfg['model']['input_size'])
        self.log_every = max(int(log_every), 1)
        self.history, self.val_history, self.start, self.done_here = [], [], 0, 0
        self.nonfinite = NonFiniteLoss(cfg['on_nonfinite_loss'], save_dir, with_state=True)

    def load_data(self):
        data_cfg = self.cfg['train_dataset']
        self.loader_cfg = {k: data_cfg[k] for k in ('num_workers', 'use_shared_memory')}
        t_load = time.time()
        self.data = load_classification_set(
            data_cfg['image_root'], self.input_size, data_cfg['file_list'], data_cfg['synsets'],
            on_bad_image=data_cfg['on_bad_image'], loader_cfg=self.loader_cfg)
        if self.data.skipped:
            log(f'skipped {len(self.data.skipped)} unreadable images, e.g. {self.data.skipped[:3]}')
        train_index, val_index = split_train_val(self.data.labels,
                                                 float(data_cfg['val_fraction']), self.seed)
        self.train_set, self.val_set = self.data.subset(train_index), self.data.subset(val_index)
        self.num_classes = len(self.data.class_names)
        self.batch_size = int(self.cfg['batch_size'])
        self.iters = int(self.cfg['iters'])
        if self.cfg['epochs'] is not None:
            self.iters = max(1, math.ceil(float(self.cfg['epochs']) * len(self.train_set)
                                          / self.batch_size))
        self.load_seconds = time.time() - t_load

    def build(self):
        """Seeded model init, the CAM check, optimizer and FS loss."""
        cfg = self.cfg
        paddle.seed(self.seed)
        np.random.seed(self.seed)
        self.clf = self.fns.build_model(cfg, self.num_classes, self.config_path)
        if uses_cam(cfg) and self.clf.fc_layer is None:
            raise PSSLError(f"{self.config_path}: loss.importance_sampling / "
                            f"loss.feature_similarity need the CAM, but {cfg['model']['name']} "
                            f'at input_size {self.input_size} does not end in global average '
                            'pooling + one linear layer (or its last feature map is 1x1)')
        self.model = self.clf.model
        self.model.train()
        self.optimizer, self.schedule = make_optimizer(cfg, self.model, self.iters)
        self.fs_loss = self.fns.make_fs_loss(cfg['loss'])

    def resume_from(self, resume):
        ckpt = read_checkpoint(resume, with_state=True, flag='--resume')
        state, name = ckpt.state, self.cfg['model']['name']
        if state.get('class_names') != self.data.class_names or state.get('model') != name:
            raise PSSLError(f'{resume}: checkpoint of {state.get("model")} on '
                            f'{len(state.get("class_names") or [])} classes does not match '
                            f'{name} on {self.num_classes} classes')
        require_fit(os.path.join(resume, PARAMS), ckpt.params, self.model, '--resume')
        self.model.set_state_dict(ckpt.params)
        self.optimizer.set_state_dict(ckpt.optimizer)
        self.start = int(state['iteration'])
        self.history = state.get('history', [])
        self.val_history = state.get('val_history', [])
        log(f'resumed from {resume} at iter {self.start}')

    def announce(self):
        log(f"train {self.cfg['model']['name']} on {len(self.train_set)} images "
            f'({len(self.val_set)} val, {self.num_classes} classes, listed and checked in '
            f'{self.load_seconds:.1f} s), batch {self.batch_size}, iters '
            f"{self.start + 1}..{self.iters}, {self.loader_cfg['num_workers']} reader "
            f'processes, save_dir {self.save_dir}')

    def state_at(self, iteration):
        """What ``state.json`` of a checkpoint holds for resume."""
        return {'iteration': iteration, 'model': self.cfg['model']['name'],
                'class_names': self.data.class_names, 'history': self.history,
                'val_history': self.val_history, 'config': self.cfg}

    def batches(self):
        """The batches of iterations ``start``..``iters - 1``, read by the
        loader's workers (:func:`.dataset.train_batches`)."""
        aug = self.cfg['augment']
        return train_batches(self.train_set, self.batch_size, self.seed, self.start, self.iters,
                             {'out_size': self.input_size, 'flip': bool(aug['flip']),
                              'scale': tuple(aug['random_resized_crop']),
                              'ratio': tuple(aug['ratio'])}, self.loader_cfg)

    def step(self, it, batch):
        """One optimisation step on ``batch``, the batch of iteration ``it``
        (0-based); batch, crops and random draws depend only on (seed, it)."""
        seed, train_set = self.seed, self.train_set
        index, labels_np = batch['index'], batch['label']
        paddle.seed(_iteration_seed(seed, it))  # dropout etc.: same draws after resume
        losses, logits = self.fns.compute_losses(self.clf, batch['image'], labels_np,
                                                 self.cfg['loss'],
                                                 self.num_classes, iteration_rng(seed, it, 2),
                                                 self.fs_loss)
        total = losses['loss']
        if self.nonfinite.check(float(total), it + 1, [train_set.rel_paths[i] for i in index],
                                lambda: ((n, p.numpy()) for n, p in self.model.named_parameters())):
            self.optimizer.clear_grad()
            self.schedule.step()   # the schedule goes on, as after a step
            return None
        total.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        lr = self.optimizer.get_lr()
        self.schedule.step()
        record = {'iter': it + 1, **{k: float(v) for k, v in losses.items()},
                  'acc': float((logits.argmax(axis=1).numpy() == labels_np).mean()), 'lr': lr}
        self.history.append(record)
        self.done_here += 1
        return record

    def report(self, it, record, writer, t_start):
        """VisualDL scalars, the console line every ``log_every`` iterations,
        and val accuracy every ``eval_interval`` (the last one is in finish)."""
        if writer is not None:
            for key, tag in _VDL_TAGS:
                if key in record:
                    writer.add_scalar(tag, record[key], it + 1)
        last = it + 1 == self.iters
        if (it + 1) % self.log_every == 0 or last:
            window = self.history[-self.log_every:]
            speed = self.done_here / max(time.time() - t_start, 1e-9)
            parts = ' '.join(f'{k} {np.mean([r[k] for r in window]):.4f}'
                             for k in ('loss_gap', 'loss_is', 'loss_fs') if k in record)
            log(f"[TRAIN] iter {it + 1}/{self.iters} loss "
                f"{np.mean([r['loss'] for r in window]):.4f} ({parts}) acc "
                f"{np.mean([r['acc'] for r in window]):.3f} lr {record['lr']:.5f} "
                f'| {speed * 60:.1f} it/min')
        interval = self.cfg['eval_interval']
        if interval and (it + 1) % int(interval) == 0 and not last and len(self.val_set):
            acc = self._accuracy(self.val_set)
            self.val_history.append({'iter': it + 1, 'acc': acc})
            if writer is not None:
                writer.add_scalar('Val/acc', acc, it + 1)
            log(f'[EVAL] iter {it + 1} val acc {acc:.3f}')

    def _accuracy(self, subset):
        if not len(subset):
            return None
        return self.fns.evaluate_accuracy(
            self.clf, eval_batches(subset, self.input_size))

    def finish(self, train_seconds, writer, resume):
        """Final weights, val and train accuracy, ``train_cls.json``; -> the result."""
        if self.nonfinite.summary():
            from paddleseg.utils import logger
            logger.warning(self.nonfinite.summary())
        weights_path = os.path.join(self.save_dir, 'model.pdparams')
        atomic_paddle_save(self.model.state_dict(), weights_path)
        val_acc = self._accuracy(self.val_set)
        if val_acc is not None:
            self.val_history.append({'iter': self.iters, 'acc': val_acc})
            if writer is not None:
                writer.add_scalar('Val/acc', val_acc, self.iters)
        train_acc_eval = self._accuracy(self.train_set)
        if writer is not None:
            writer.close()
        self.model.eval()
        result = self._result(weights_path, val_acc, train_acc_eval, train_seconds, resume)
        write_json(os.path.join(self.save_dir, RESULT_FILE), result)
        val_text = 'n/a' if val_acc is None else f'{val_acc:.3f}'
        log(f"done: {weights_path}; train acc {result['train_acc_final']:.3f} (eval "
            f'{train_acc_eval:.3f}), val acc {val_text}, {result["iters_per_min"]} it/min')
        return result

    def _result(self, weights_path, val_acc, train_acc_eval, train_seconds, resume):
        history, window = self.history, self.log_every
        windows = [history[i:i + window] for i in range(0, len(history), window)]
        window_acc = [float(np.mean([r['acc'] for r in w])) for w in windows if w]
        return {
            'weights': weights_path,
            'model': self.cfg['model']['name'],
            'input_size': self.input_size,
            'num_classes': self.num_classes,
            'class_names': self.data.class_names,
            'num_train': len(self.train_set),
            'num_val': len(self.val_set),
            'skipped_images': self.data.skipped,
            'iters': self.iters,
            'resumed_from': self.start if resume else None,
            'train_acc_final': (float(np.mean([r['acc'] for r in history[-window:]]))
                                if history else None),
            'train_acc_best': max(window_acc) if window_acc else None,
            'train_acc_eval': train_acc_eval,
            'val_acc': val_acc,
            'val_acc_best': max((v['acc'] for v in self.val_history), default=None),
            'skipped_nonfinite_batches': self.nonfinite.skipped,
            'seconds': round(train_seconds, 2),
            'load_seconds': round(self.load_seconds, 2),
            'iters_per_min': (round(60.0 * self.done_here / train_seconds, 2)
                              if self.done_here else None),
            'history': history,
            'val_history': self.val_history,
            'config': self.cfg,
        }
