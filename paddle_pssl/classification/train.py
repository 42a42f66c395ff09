"""Train an image classifier on a class-per-folder set, optionally with the
HFPL losses, for the classifiers whose explanations become PSSL labels.

    python tools/train_cls.py -c configs/classifiers/resnet18_vd_source.yml --use_vdl

The config (YAML with ``_base_``, ``--opts``) is the ``classifier`` schema of
:mod:`paddle_pssl.config.schemas`, where every key's default, type, range and
meaning is declared; an unknown key or a bad value is refused with one line
naming it.

Output in ``save_dir``: ``model.pdparams`` (loads strictly with
``build_classifier(name, weights=<it>, num_classes=K, input_size=S)``),
``train_cls.json`` (config, class names, accuracies, loss history), VisualDL
scalars ``Train/loss``, ``Train/loss_gap``, ``Train/loss_is``, ``Train/loss_fs``,
``Train/acc``, ``Train/lr``, ``Val/acc`` with ``use_vdl``.
"""
import json
import math
import os
import shutil
import time
import warnings

import numpy as np

from paddle_pssl import _zlib_first  # noqa: F401  before paddle
import paddle
import paddle.nn.functional as F

from ..classifiers import build_classifier
from ..config import validate
from ..losses.hfpl import (FeatureSimilarityLoss, cam_to_class_map,
                           importance_sampling_loss)
from ..utils.errors import PSSLError, one_line
from ..utils.io import atomic_paddle_save, atomic_write_text
from .dataset import (augment_batch, batch_indices, iteration_rng,
                      load_classification_set, split_train_val)

__all__ = ['train_classifier', 'train_cls_main', 'cam_logits',
           'compute_losses', 'make_fs_loss',
           'evaluate_accuracy', 'normalise_batch', 'RESULT_FILE']

RESULT_FILE = 'train_cls.json'

def uses_cam(cfg):
    return bool(cfg['loss']['importance_sampling'] or cfg['loss']['feature_similarity'])


# ------------------------------------------------------------------ pieces
def cam_logits(features, fc_layer):
    """CAM before pooling: z[n, k, i, j] = sum_c features[n, c, i, j] W[c, k] + b[k].

    Paddle's Linear stores W as [C, K]; the mean of z over pixels equals the
    GAP logits when the model ends in GAP + this layer.
    """
    z = paddle.matmul(features.transpose([0, 2, 3, 1]), fc_layer.weight)
    if fc_layer.bias is not None:
        z = z + fc_layer.bias
    return z.transpose([0, 3, 1, 2])


def normalise_batch(images_uint8, mean, std):
    """uint8 [B, H, W, 3] RGB -> float32 NCHW tensor (x - mean) / std, 0..255 units."""
    x = images_uint8.astype(np.float32)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return paddle.to_tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def evaluate_accuracy(clf, images, labels, batch_size=64):
    """Top-1 accuracy in eval mode, images uint8 [N, S, S, 3] at input size."""
    if len(labels) == 0:
        return None
    was_training = clf.model.training
    clf.model.eval()
    correct = 0
    try:
        with paddle.no_grad():
            for start in range(0, len(labels), batch_size):
                x = normalise_batch(images[start:start + batch_size], clf.mean, clf.std)
                pred = clf.model(x).argmax(axis=1).numpy()
                correct += int((pred == labels[start:start + batch_size]).sum())
    finally:
        if was_training:
            clf.model.train()
    return correct / len(labels)


def make_fs_loss(loss_cfg):
    return FeatureSimilarityLoss(loss_cfg['fs_mu'], loss_cfg['fs_sigma'],
                                 loss_cfg['fs_radius'], loss_cfg['fs_mode'])


def compute_losses(clf, batch, labels_np, loss_cfg, num_classes, generator=None,
                   fs_loss=None):
    """Losses of one batch: ({'loss', 'loss_gap'[, 'loss_is'][, 'loss_fs']} tensors, logits).

    ``batch`` uint8 [B, S, S, 3] RGB at input size, ``labels_np`` int [B];
    ``generator`` (numpy) draws the IS pixels. The CAM (and so L_IS, L_FS)
    comes from the last feature map and the fc layer, in the same graph as
    the GAP logits.
    """
    x = normalise_batch(batch, clf.mean, clf.std)
    labels = paddle.to_tensor(np.asarray(labels_np, np.int64))
    onehot = paddle.to_tensor(np.eye(num_classes, dtype=np.float32)[labels_np])
    want_is = bool(loss_cfg['importance_sampling'])
    want_fs = bool(loss_cfg['feature_similarity'])
    if want_is or want_fs:
        if clf.fc_layer is None:
            raise PSSLError(f'{clf.name}: the HFPL losses need the CAM (GAP + one linear layer)')
        features, logits = clf.features_and_logits(x)
        cam = cam_logits(features, clf.fc_layer)
    else:
        logits = clf.model(x)
    if loss_cfg['gap_loss'] == 'ce':
        loss_gap = F.cross_entropy(logits, labels)
    else:
        loss_gap = F.binary_cross_entropy_with_logits(logits, onehot)
    out = {'loss_gap': loss_gap}
    total = float(loss_cfg['gap']) * loss_gap
    if want_is:
        out['loss_is'] = importance_sampling_loss(
            cam, onehot, int(loss_cfg['num_samples']),
            present_only=bool(loss_cfg['present_only']), generator=generator)
        total = total + float(loss_cfg['importance_sampling']) * out['loss_is']
    if want_fs:
        image01 = paddle.to_tensor(np.ascontiguousarray(
            batch.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0)
        fs_loss = fs_loss or make_fs_loss(loss_cfg)
        out['loss_fs'] = fs_loss(image01, cam_to_class_map(cam, onehot))
        total = total + float(loss_cfg['feature_similarity']) * out['loss_fs']
    out['loss'] = total
    return out, logits


def _at_input_size(images, size):
    if images.shape[1] == size:
        return images
    import cv2
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
                     for im in images]) if len(images) else images[:, :size, :size]


def _build_model(cfg, num_classes, path):
    spec = cfg['model']
    name, weights = spec['name'], spec['weights']
    if not isinstance(name, str) or not name:
        raise PSSLError(f'{path}: model.name is required')
    load_path = None
    if weights not in (None, 'random', False):
        load_path = str(weights)
        if not os.path.isfile(load_path):
            raise PSSLError(f'{load_path}: model.weights file not found')
        if not load_path.endswith('.pdparams'):
            raise PSSLError(f'{load_path}: model.weights must be a .pdparams file')
        weights = 'random'
    elif weights is None and not name.lower().replace('-', '_').startswith('efficientnet_lite'):
        weights = 'random'  # PaddleClas ships none: say nothing, random is the default
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            clf = build_classifier(name, weights=weights, num_classes=num_classes,
                                   input_size=spec['input_size'])
    except (ValueError, FileNotFoundError) as e:
        raise PSSLError(f'{path}: model.name {name!r}: {one_line(e)}')
    if load_path:
        _load_by_shape(clf.model, load_path, clf.fc_layer)
    return clf


def _load_by_shape(model, path, fc_layer):
    """Load every key of ``path`` whose shape fits; only the classifier layer
    may mismatch (another class count), anything else is an error."""
    state = paddle.load(path)
    own = model.state_dict()
    fc_names = {p.name for p in fc_layer.parameters()} if fc_layer is not None else set()
    fc_keys = {k for k, v in own.items() if getattr(v, 'name', None) in fc_names}
    fits = {k: v for k, v in state.items() if k in own and list(v.shape) == list(own[k].shape)}
    bad = sorted(k for k in own if k not in fits and k not in fc_keys)
    if bad:
        raise PSSLError(f'{path}: model.weights do not fit the model: {len(bad)} keys missing '
                        f'or of another shape, e.g. {bad[:3]}')
    with warnings.catch_warnings():  # Paddle warns per skipped key; one line instead
        warnings.simplefilter('ignore')
        model.set_state_dict(fits)
    skipped = sorted(set(own) - set(fits))
    _log(f'model.weights {path}: loaded {len(fits)} tensors'
         + (f', classifier layer {skipped} left random (another class count)' if skipped else ''))


def _make_optimizer(cfg, model, iters):
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


def _iteration_seed(seed, iteration):
    return int(np.random.SeedSequence([int(seed), int(iteration), 3]).generate_state(1)[0])


def _write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=1, default=_json_default))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _log(message):
    from paddleseg.utils import logger
    logger.info(message)


class _Checkpoints:
    """``<save_dir>/iter_<n>/{model.pdparams, model.pdopt, state.json}``."""

    def __init__(self, save_dir, keep):
        self.save_dir, self.keep = save_dir, max(int(keep), 1)

    def save(self, iteration, model, optimizer, state):
        directory = os.path.join(self.save_dir, f'iter_{iteration}')
        os.makedirs(directory, exist_ok=True)
        atomic_paddle_save(model.state_dict(), os.path.join(directory, 'model.pdparams'))
        atomic_paddle_save(optimizer.state_dict(), os.path.join(directory, 'model.pdopt'))
        _write_json(os.path.join(directory, 'state.json'), state)  # last: marks it complete
        saved = sorted((int(d[5:]) for d in os.listdir(self.save_dir)
                        if d.startswith('iter_') and d[5:].isdigit()
                        and os.path.isfile(os.path.join(self.save_dir, d, 'state.json'))))
        for old in saved[:-self.keep]:
            shutil.rmtree(os.path.join(self.save_dir, f'iter_{old}'), ignore_errors=True)
        return directory

    @staticmethod
    def load(directory):
        files = {n: os.path.join(directory, n) for n in ('model.pdparams', 'model.pdopt',
                                                          'state.json')}
        if not os.path.isdir(directory):
            raise PSSLError(f'{directory}: --resume directory not found')
        for name, file in files.items():
            if not os.path.isfile(file):
                raise PSSLError(f'{directory}: not a checkpoint ({name} missing)')
        with open(files['state.json']) as f:
            state = json.load(f)
        return paddle.load(files['model.pdparams']), paddle.load(files['model.pdopt']), state


# ------------------------------------------------------------------- train
def train_classifier(cfg, save_dir, use_vdl=False, log_every=10, resume=None,
                     config_path='<config>'):
    """Train as the module docstring describes; returns the result dict that
    is also written to ``<save_dir>/train_cls.json``:
    ``weights``, ``class_names``, ``num_classes``, ``iters``, ``train_acc_final``
    (mean over the last ``log_every`` iterations, augmented, train mode),
    ``train_acc_best`` (best such window), ``train_acc_eval`` (eval mode, whole
    train split), ``val_acc`` / ``val_acc_best`` (None without a val split),
    ``history`` (one entry per iteration), ``seconds``, ``iters_per_min``.
    """
    # A fresh name space per run: parameter and optimizer-accumulator names
    # (the keys of model.pdopt) then do not depend on what the process built
    # before, so --resume matches them, and PaddleClas nets with fixed
    # ParamAttr names (ShuffleNetV2, MobileNetV2, GhostNet) train twice per process.
    with paddle.utils.unique_name.guard():
        return _train(cfg, save_dir, use_vdl, log_every, resume, config_path)


def _train(cfg, save_dir, use_vdl, log_every, resume, config_path):
    cfg = validate('classifier', cfg, config_path)
    if resume and not os.path.isdir(resume):
        raise PSSLError(f'{resume}: --resume directory not found')
    seed = int(cfg['seed'])
    loss_cfg, aug = cfg['loss'], cfg['augment']
    input_size = int(cfg['model']['input_size'])
    data_cfg = cfg['train_dataset']
    store_size = int(data_cfg['store_size'] or input_size)

    t_load = time.time()
    data = load_classification_set(data_cfg['image_root'], store_size,
                                   data_cfg['file_list'], data_cfg['synsets'],
                                   on_bad_image=data_cfg['on_bad_image'])
    if data.skipped:
        _log(f'skipped {len(data.skipped)} unreadable images, e.g. {data.skipped[:3]}')
    train_index, val_index = split_train_val(data.labels, float(data_cfg['val_fraction']), seed)
    train_set, val_set = data.subset(train_index), data.subset(val_index)
    num_classes = len(data.class_names)
    batch_size = int(cfg['batch_size'])
    iters = int(cfg['iters'])
    if cfg['epochs'] is not None:
        iters = max(1, math.ceil(float(cfg['epochs']) * len(train_set) / batch_size))
    load_seconds = time.time() - t_load

    paddle.seed(seed)
    np.random.seed(seed)
    clf = _build_model(cfg, num_classes, config_path)
    if uses_cam(cfg) and clf.fc_layer is None:
        raise PSSLError(f"{config_path}: loss.importance_sampling / loss.feature_similarity "
                        f"need the CAM, but {cfg['model']['name']} at input_size "
                        f"{input_size} does not end in global average pooling + one linear "
                        'layer (or its last feature map is 1x1)')
    model = clf.model
    model.train()
    optimizer, schedule = _make_optimizer(cfg, model, iters)
    fs_loss = make_fs_loss(loss_cfg)

    os.makedirs(save_dir, exist_ok=True)
    checkpoints = _Checkpoints(save_dir, cfg['keep_checkpoint_max'])
    history, val_history, start = [], [], 0
    if resume:
        params, opt_state, state = _Checkpoints.load(resume)
        if state.get('class_names') != data.class_names or \
                state.get('model') != cfg['model']['name']:
            raise PSSLError(f'{resume}: checkpoint of {state.get("model")} on '
                            f'{len(state.get("class_names") or [])} classes does not match '
                            f"{cfg['model']['name']} on {num_classes} classes")
        model.set_state_dict(params)
        optimizer.set_state_dict(opt_state)
        start = int(state['iteration'])
        history, val_history = state.get('history', []), state.get('val_history', [])
        _log(f'resumed from {resume} at iter {start}')

    writer = None
    if use_vdl:
        from visualdl import LogWriter
        writer = LogWriter(logdir=save_dir)

    _log(f"train {cfg['model']['name']} on {len(train_set)} images ({len(val_set)} val, "
         f'{num_classes} classes, loaded in {load_seconds:.1f} s), batch {batch_size}, '
         f'iters {start + 1}..{iters}, save_dir {save_dir}')

    def state_at(iteration):
        return {'iteration': iteration, 'model': cfg['model']['name'],
                'class_names': data.class_names, 'history': history,
                'val_history': val_history, 'config': cfg}

    t_start = time.time()
    done_here = 0
    for it in range(start, iters):
        index = batch_indices(len(train_set), batch_size, it, seed)
        batch = augment_batch(train_set.images[index], input_size, iteration_rng(seed, it, 1),
                              flip=bool(aug['flip']), scale=tuple(aug['random_resized_crop']),
                              ratio=tuple(aug['ratio']))
        labels_np = train_set.labels[index]
        paddle.seed(_iteration_seed(seed, it))  # dropout etc.: same draws after resume
        losses, logits = compute_losses(clf, batch, labels_np, loss_cfg, num_classes,
                                        iteration_rng(seed, it, 2), fs_loss)
        total = losses['loss']
        if not math.isfinite(float(total)):
            raise PSSLError(f'{config_path}: the loss became {float(total)} at iter {it + 1}; '
                            'lower optimizer.lr')
        total.backward()
        optimizer.step()
        optimizer.clear_grad()
        lr = optimizer.get_lr()
        schedule.step()

        record = {'iter': it + 1, **{k: float(v) for k, v in losses.items()},
                  'acc': float((logits.argmax(axis=1).numpy() == labels_np).mean()), 'lr': lr}
        history.append(record)
        done_here += 1
        if writer is not None:
            for key, tag in (('loss', 'Train/loss'), ('loss_gap', 'Train/loss_gap'),
                             ('loss_is', 'Train/loss_is'), ('loss_fs', 'Train/loss_fs'),
                             ('acc', 'Train/acc'), ('lr', 'Train/lr')):
                if key in record:
                    writer.add_scalar(tag, record[key], it + 1)

        last = it + 1 == iters
        if (it + 1) % max(int(log_every), 1) == 0 or last:
            window = history[-max(int(log_every), 1):]
            speed = done_here / max(time.time() - t_start, 1e-9)
            parts = ' '.join(f'{k} {np.mean([r[k] for r in window]):.4f}'
                             for k in ('loss_gap', 'loss_is', 'loss_fs') if k in record)
            _log(f"[TRAIN] iter {it + 1}/{iters} loss {np.mean([r['loss'] for r in window]):.4f} "
                 f"({parts}) acc {np.mean([r['acc'] for r in window]):.3f} lr {lr:.5f} "
                 f'| {speed * 60:.1f} it/min')
        if cfg['eval_interval'] and (it + 1) % int(cfg['eval_interval']) == 0 and not last \
                and len(val_set):
            acc = evaluate_accuracy(clf, _at_input_size(val_set.images, input_size),
                                    val_set.labels)
            val_history.append({'iter': it + 1, 'acc': acc})
            if writer is not None:
                writer.add_scalar('Val/acc', acc, it + 1)
            _log(f'[EVAL] iter {it + 1} val acc {acc:.3f}')
        if cfg['save_interval'] and (it + 1) % int(cfg['save_interval']) == 0:
            checkpoints.save(it + 1, model, optimizer, state_at(it + 1))
    train_seconds = time.time() - t_start

    weights_path = os.path.join(save_dir, 'model.pdparams')
    atomic_paddle_save(model.state_dict(), weights_path)
    val_acc = evaluate_accuracy(clf, _at_input_size(val_set.images, input_size), val_set.labels)
    if val_acc is not None:
        val_history.append({'iter': iters, 'acc': val_acc})
        if writer is not None:
            writer.add_scalar('Val/acc', val_acc, iters)
    train_acc_eval = evaluate_accuracy(clf, _at_input_size(train_set.images, input_size),
                                       train_set.labels)
    if writer is not None:
        writer.close()
    model.eval()

    window = max(int(log_every), 1)
    windows = [history[i:i + window] for i in range(0, len(history), window)]
    window_acc = [float(np.mean([r['acc'] for r in w])) for w in windows if w]
    result = {
        'weights': weights_path,
        'model': cfg['model']['name'],
        'input_size': input_size,
        'num_classes': num_classes,
        'class_names': data.class_names,
        'num_train': len(train_set),
        'num_val': len(val_set),
        'skipped_images': data.skipped,
        'iters': iters,
        'resumed_from': start if resume else None,
        'train_acc_final': float(np.mean([r['acc'] for r in history[-window:]])) if history else None,
        'train_acc_best': max(window_acc) if window_acc else None,
        'train_acc_eval': train_acc_eval,
        'val_acc': val_acc,
        'val_acc_best': max((v['acc'] for v in val_history), default=None),
        'seconds': round(train_seconds, 2),
        'load_seconds': round(load_seconds, 2),
        'iters_per_min': round(60.0 * done_here / train_seconds, 2) if done_here else None,
        'history': history,
        'val_history': val_history,
        'config': cfg,
    }
    _write_json(os.path.join(save_dir, RESULT_FILE), result)
    val_text = 'n/a' if val_acc is None else f'{val_acc:.3f}'
    _log(f"done: {weights_path}; train acc {result['train_acc_final']:.3f} (eval "
         f'{train_acc_eval:.3f}), val acc {val_text}, {result["iters_per_min"]} it/min')
    return result


# --------------------------------------------------------------------- CLI
def train_cls_main(argv=None):
    """``tools/train_cls.py``: parse flags, load the YAML, call :func:`train_classifier`."""
    from ..config import load_yaml
    from ..utils.cli import ArgumentParser, add_config_args, setup_runtime

    p = ArgumentParser('Train an image classifier (optionally with HFPL losses) '
                       'whose explanations become PSSL labels.')
    add_config_args(p)
    p.add_argument('--save_dir', default=None,
                   help='default: output/classifiers/<config name>')
    p.add_argument('--iters', type=int, default=None, help='overrides iters (and epochs)')
    p.add_argument('--batch_size', type=int, default=None)
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--resume', default=None, help='checkpoint directory, e.g. <save_dir>/iter_100')
    p.add_argument('--save_interval', type=int, default=None,
                   help='checkpoint every N iterations (overrides save_interval)')
    p.add_argument('--log_iters', type=int, default=10)
    p.add_argument('--use_vdl', action='store_true', help='log to VisualDL in save_dir')
    args = p.parse_args(argv)

    dic = load_yaml(args.cfg, args.opts)
    if args.iters is not None:
        dic['iters'], dic['epochs'] = args.iters, None
    for key in ('batch_size', 'seed', 'save_interval'):
        if getattr(args, key) is not None:
            dic[key] = getattr(args, key)
    merged = validate('classifier', dic, args.cfg)  # refuse bad keys before touching the device
    save_dir = args.save_dir or os.path.join(
        'output', 'classifiers', os.path.splitext(os.path.basename(args.cfg))[0])
    setup_runtime(args.device, merged['seed'])
    return train_classifier(dic, save_dir, use_vdl=args.use_vdl, log_every=args.log_iters,
                            resume=args.resume, config_path=args.cfg)
