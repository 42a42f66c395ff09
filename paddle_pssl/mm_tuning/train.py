"""The Mix-and-Match tuning stage (docs/methods.md section 4), run by
``tools/train.py -c configs/mm_tuning/<name>.yml``.

The config is a PaddleSeg one (``model`` with ``pretrained:`` = the checkpoint
to start from, ``train_dataset`` = the labelled target set) plus a top-level
``mm_tuning:`` block (its keys: the ``mm_tuning`` schema in
:mod:`paddle_pssl.config.schemas`). Each step samples
``images_per_step`` images, Mixes their patches, Matches them into triplets,
runs only the model's backbone on the patches and takes an SGD step on the
triplet loss of the chosen feature map, global-average-pooled and
L2-normalised. Only backbone parameters are optimised; the head is carried
along untouched, so ``iter_<n>/model.pdparams`` is a full segmentation model
that fine-tune configs load with ``model.pretrained``.

Step ``i`` draws its images and patches from generators seeded with
``(seed, i)``, so a resumed run replays the same batches as an uninterrupted
one. Single process only.
"""
import os
import random
import time

import numpy as np

import paddle

from ..config import mm_tuning_settings
from ..losses.triplet import MixMatchTripletLoss, triplet_margin_loss
from ..utils.checkpoint import PARAMS, Checkpoints, read_checkpoint, require_complete, require_fit
from ..utils.errors import PSSLError
from ..utils.nonfinite import NonFiniteLoss
from .graph import build_triplets
from .patches import PatchSampler, sample_batch_patches

__all__ = ['train_mm']

def _seed_state(*words):
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1)[0])


def _step_images(iteration, n_images, per_step, seed):
    """Indices of step ``iteration`` (1-based): epochs of seeded permutations,
    the last incomplete batch of each epoch dropped (PaddleSeg's drop_last)."""
    per_epoch = n_images // per_step
    epoch, k = divmod(iteration - 1, per_epoch)
    perm = np.random.default_rng([seed, 1, epoch]).permutation(n_images)
    return perm[k * per_step:(k + 1) * per_step]


def _as_label(label):
    label = np.asarray(label)
    if label.ndim == 3 and label.shape[0] == 1:
        label = label[0]
    return label.astype(np.int64)


def _triplet_stats(embeddings, anchor, positive, negative, margin):
    """Mean squared distances and the share of triplets with a non-zero hinge."""
    if len(anchor) == 0:
        return {'d_ap': 0.0, 'd_an': 0.0, 'active': 0.0}
    d_ap = ((embeddings[anchor] - embeddings[positive])**2).sum(1)
    d_an = ((embeddings[anchor] - embeddings[negative])**2).sum(1)
    return {'d_ap': float(d_ap.mean()), 'd_an': float(d_an.mean()),
            'active': float((margin + d_ap - d_an > 0).mean())}


def _backbone(model):
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, paddle.nn.Layer):
        raise PSSLError(f'mm_tuning: model {type(model).__name__} has no `backbone` '
                        'layer to tune')
    return backbone


def _renamed(state, names):
    """Optimizer state with accumulator keys moved from one naming to another.

    Paddle keys accumulators by the parameter's generated name
    (``conv2d_114.w_0_velocity_0``), which depends on how many layers were built
    before; checkpoints store them under the structured name instead
    (``backbone.conv1_1._conv.weight_velocity_0``), so a resume finds them
    whatever the counters. ``names`` maps old parameter names to new ones.
    """
    old_names = sorted(names, key=len, reverse=True)  # longest prefix first
    out = {}
    for key, value in state.items():
        match = next((n for n in old_names if key.startswith(n + '_')), None)
        out[names[match] + key[len(match):] if match else key] = value
    return out


def _save_checkpoint(checkpoints, iteration, model, optimizer):
    """``iter_<iteration>/`` with the model and the optimizer state under structured names."""
    to_structured = {p.name: k for k, p in model.named_parameters()}
    return checkpoints.save(iteration, model.state_dict(),
                            _renamed(optimizer.state_dict(), to_structured))


def _resume(model, optimizer, directory):
    """Load a complete ``iter_<n>`` checkpoint into model and optimizer; -> n."""
    ckpt = read_checkpoint(directory, flag='--resume_model', need_name=True)
    require_fit(os.path.join(directory, PARAMS), ckpt.params, model, '--resume_model')
    model.set_state_dict(ckpt.params)
    to_generated = {k: p.name for k, p in model.named_parameters()}
    optimizer.set_state_dict(_renamed(ckpt.optimizer, to_generated))
    return ckpt.iteration


def _make_optimizer(settings, backbone, iters):
    """SGD with momentum on the backbone only, lr x decay_factor from decay_at."""
    lr = float(settings['learning_rate'])
    boundary = int(round(float(settings['decay_at']) * iters))
    scheduler = paddle.optimizer.lr.PiecewiseDecay(
        boundaries=[max(boundary, 1)], values=[lr, lr * float(settings['decay_factor'])])
    # only the backbone: weight decay must not move the untouched head either
    optimizer = paddle.optimizer.Momentum(
        learning_rate=scheduler, momentum=float(settings['momentum']),
        parameters=backbone.parameters(),
        weight_decay=float(settings['weight_decay']) or None)
    return optimizer, scheduler, boundary


def _train_mode(model, backbone, freeze_bn):
    model.train()
    if freeze_bn:
        for layer in backbone.sublayers():
            if isinstance(layer, paddle.nn.layer.norm._BatchNormBase):
                layer.eval()


class _Step:
    """One M&M step: Mix the patches of the step's images, Match them into
    triplets, one SGD step on the triplet loss. Its draws depend only on
    (seed, iteration)."""

    def __init__(self, train_dataset, per_step, seed, sampler, backbone, criterion, optimizer,
                 margin, nonfinite):
        self.train_dataset, self.per_step, self.seed = train_dataset, per_step, seed
        self.sampler, self.backbone, self.criterion = sampler, backbone, criterion
        self.optimizer, self.margin, self.nonfinite = optimizer, margin, nonfinite
        self.empty_steps = 0

    def __call__(self, iteration):
        """-> (stats, lr used); stats: loss, d_ap, d_an, active, patches, triplets."""
        seed = self.seed
        # Mix: the step's images, patches of all of them shuffled together
        # PaddleSeg's transforms draw from the global generators
        np.random.seed(_seed_state(seed, 2, iteration))
        random.seed(_seed_state(seed, 4, iteration))
        rng = np.random.default_rng([seed, 3, iteration])
        index = _step_images(iteration, len(self.train_dataset), self.per_step, seed)
        samples = [self.train_dataset[int(i)] for i in index]
        patches, labels, _ = sample_batch_patches(
            [s['img'] for s in samples], [_as_label(s['label']) for s in samples],
            self.sampler, rng, shuffle=True, channels_first=True)
        # Match
        anchor, positive, negative = build_triplets(labels, rng)
        lr_now = self.optimizer.get_lr()
        if len(anchor) == 0:
            # one class only (or no patch): nothing to learn from this batch
            self.empty_steps += 1
            stats = {'loss': 0.0, 'd_ap': 0.0, 'd_an': 0.0, 'active': 0.0}
        else:
            stats = self._learn(patches, anchor, positive, negative, iteration, index)
        stats.update(patches=len(labels), triplets=len(anchor))
        return stats, lr_now

    def _files(self, index):
        """The image files of the step's samples, where the dataset lists them."""
        listed = getattr(self.train_dataset, 'file_list', None)
        if not isinstance(listed, (list, tuple)):
            return []
        return [listed[int(i)][0] if isinstance(listed[int(i)], (list, tuple)) else listed[int(i)]
                for i in index]

    def _learn(self, patches, anchor, positive, negative, iteration, index):
        features = self.backbone(paddle.to_tensor(patches))
        embeddings = self.criterion.embed(features)
        loss = triplet_margin_loss(embeddings, anchor, positive, negative, self.margin)
        stats = dict(_triplet_stats(embeddings.numpy(), anchor, positive, negative, self.margin),
                     loss=float(loss))
        # before the step: the checkpoints stay sound
        if self.nonfinite.check(stats['loss'], iteration, self._files(index),
                                lambda: ((n, p.numpy()) for n, p in self.backbone.named_parameters())):
            self.optimizer.clear_grad()
            return {'loss': 0.0, 'd_ap': 0.0, 'd_an': 0.0, 'active': 0.0}
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        return stats


class _Report:
    """Means of the step statistics since the last log line, to the console
    and (``writer``) VisualDL."""

    def __init__(self, logger, writer, iters, per_step):
        from paddleseg.utils import TimeAverager
        self.logger, self.writer, self.iters, self.per_step = logger, writer, iters, per_step
        self.batch_cost = TimeAverager()
        self.sums, self.steps = {}, 0

    def add(self, stats, seconds):
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.batch_cost.record(seconds, num_samples=self.per_step)

    def flush(self, iteration, lr_now):
        from paddleseg.utils import calculate_eta
        mean = {k: v / self.steps for k, v in self.sums.items()}
        cost = self.batch_cost.get_average()
        self.logger.info(
            f"[MM] iter: {iteration}/{self.iters}, loss: {mean['loss']:.4f}, lr: {lr_now:.6f}, "
            f"patches: {mean['patches']:.1f}, triplets: {mean['triplets']:.1f}, "
            f"active: {mean['active']:.3f}, d_ap: {mean['d_ap']:.3f}, d_an: {mean['d_an']:.3f}, "
            f"batch_cost: {cost:.4f} | "
            f"ETA {calculate_eta(self.iters - iteration, cost)}")
        if self.writer is not None:
            self.writer.add_scalar('Train/loss', mean['loss'], iteration)
            self.writer.add_scalar('Train/lr', lr_now, iteration)
            self.writer.add_scalar('Train/batch_cost', cost, iteration)
            for key in ('patches', 'triplets', 'active', 'd_ap', 'd_an'):
                self.writer.add_scalar(f'Triplet/{key}', mean[key], iteration)
        self.sums, self.steps = {}, 0
        self.batch_cost.reset()


def train_mm(cfg, model, train_dataset, save_dir='output', iters=None, batch_size=None,
             learning_rate=None, seed=None, use_vdl=False, resume_model=None, log_iters=10,
             save_interval=1000, keep_checkpoint_max=5):
    """Run M&M tuning on ``model`` (already built, start weights loaded).

    ``iters`` / ``batch_size`` / ``learning_rate`` (the CLI flags, None = unset)
    override the block's ``iters`` / ``images_per_step`` / ``learning_rate``.
    Checkpoints ``<save_dir>/iter_<n>/`` every ``save_interval`` and at the
    end; the newest ``keep_checkpoint_max`` (<= 0: all) in ``save_dir`` stay.
    Returns the path of the last ``model.pdparams``.
    """
    from paddleseg.utils import logger

    if paddle.distributed.ParallelEnv().nranks > 1:
        raise PSSLError('mm_tuning runs in one process; start it without paddle.distributed.launch')
    settings = mm_tuning_settings(cfg.dic.get('mm_tuning'), iters, batch_size, learning_rate)
    iters, per_step = int(settings['iters']), int(settings['images_per_step'])
    if len(train_dataset) < per_step:
        raise PSSLError(f'train_dataset has {len(train_dataset)} samples, fewer than '
                        f'mm_tuning images_per_step {per_step}: no full batch')
    if resume_model is not None:
        require_complete(resume_model, flag='--resume_model', need_name=True)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0]) % (2**31)
        logger.info(f'[MM] no --seed given, drew {seed}: pass it again to resume identically')
    sampler_args = dict(settings['sampler'])
    if sampler_args['ignore_index'] is None:
        sampler_args['ignore_index'] = getattr(train_dataset, 'ignore_index', 255)
    sampler = PatchSampler(**sampler_args)
    criterion = MixMatchTripletLoss(margin=settings['margin'],
                                    feature_index=settings['feature_index'])
    margin = float(settings['margin'])
    backbone = _backbone(model)
    optimizer, scheduler, boundary = _make_optimizer(settings, backbone, iters)
    _train_mode(model, backbone, settings['freeze_bn'])
    start_iter = 0
    if resume_model is not None:
        start_iter = _resume(model, optimizer, resume_model)
        logger.info(f'[MM] resumed from {resume_model} at iter {start_iter}')
    checkpoints = Checkpoints(save_dir, keep=keep_checkpoint_max)
    if resume_model is None:
        checkpoints.refuse_earlier_run('--resume_model', model_dirs=True)
    log_writer = None
    if use_vdl:
        from visualdl import LogWriter
        log_writer = LogWriter(save_dir)

    logger.info(f'[MM] tuning {type(backbone).__name__} of {type(model).__name__}: {iters} iters, '
                f'{per_step} images/step, patches {sampler.min_size}-{sampler.max_size} px -> '
                f'{sampler.out_size} px, lr {float(settings["learning_rate"])} '
                f'(x{settings["decay_factor"]} at iter {boundary}), margin {margin}, seed {seed}')
    nonfinite = NonFiniteLoss(cfg.dic.get('on_nonfinite_loss', 'stop'), save_dir)
    step = _Step(train_dataset, per_step, seed, sampler, backbone, criterion, optimizer, margin,
                 nonfinite)
    report = _Report(logger, log_writer, iters, per_step)
    last = None
    tick = time.time()
    for iteration in range(start_iter + 1, iters + 1):
        stats, lr_now = step(iteration)
        scheduler.step()
        report.add(stats, time.time() - tick)
        tick = time.time()
        if iteration % log_iters == 0 or iteration == iters:
            report.flush(iteration, lr_now)
        if iteration % save_interval == 0 or iteration == iters:
            last = _save_checkpoint(checkpoints, iteration, model, optimizer)
    if nonfinite.summary():
        logger.warning(f'[MM] {nonfinite.summary()}')
    if step.empty_steps:
        logger.warning(f'[MM] {step.empty_steps} step(s) had a single class: no triplet, no update')
    if log_writer is not None:
        log_writer.close()
    return os.path.join(last, 'model.pdparams') if last else None
