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
import os
import warnings

import numpy as np

import paddle
import paddle.nn.functional as F

from ..classifiers import build_classifier
from ..config import validate
from ..losses.hfpl import (FeatureSimilarityLoss, cam_to_class_map,
                           importance_sampling_loss)
from ..utils.errors import PSSLError, one_line
from ..utils.safe_load import safe_load
from ..utils.save_dir import CLASSIFIER_OUTPUTS, claim_save_dir
from .loop import RESULT_FILE, ModelFns, run_training
from .loop import log as _log

__all__ = ['train_classifier', 'train_cls_main', 'cam_logits',
           'compute_losses', 'make_fs_loss',
           'evaluate_accuracy', 'normalise_batch', 'RESULT_FILE']



# ------------------------------------------------------------------ pieces
def cam_logits(features, fc_layer):
    """CAM before pooling: z[n, k, i, j] = sum_c features[n, c, i, j] W[c, k] + b[k].

    W is the live parameter (Paddle's Linear stores it as [C, K]; the numpy copy
    ``Classifier.fc_weight()`` is its transpose [K, C]); the mean of z over pixels
    equals the GAP logits when the model ends in GAP + this layer.
    """
    z = paddle.matmul(features.transpose([0, 2, 3, 1]), fc_layer.weight)
    if fc_layer.bias is not None:
        z = z + fc_layer.bias
    return z.transpose([0, 3, 1, 2])


def normalise_batch(images_uint8, mean, std):
    """uint8 [B, H, W, 3] RGB -> float32 NCHW tensor (x/255 - mean) / std, mean/std
    in 0..1 units (``clf.mean``, ``clf.std``)."""
    from ..classifiers import normalize_rgb
    return paddle.to_tensor(normalize_rgb(images_uint8, mean, std))


def evaluate_accuracy(clf, batches):
    """Top-1 accuracy in eval mode over ``(images, labels)`` batches, images
    uint8 [B, S, S, 3] RGB at input size; None when there are none."""
    was_training = clf.model.training
    clf.model.eval()
    correct = total = 0
    try:
        with paddle.no_grad():
            for images, labels in batches:
                pred = clf.model(normalise_batch(images, clf.mean, clf.std)).argmax(axis=1).numpy()
                correct += int((pred == np.asarray(labels)).sum())
                total += len(labels)
    finally:
        if was_training:
            clf.model.train()
    return correct / total if total else None


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


def _build_model(cfg, num_classes, path):
    from ..classifiers.default_cfgs import lite_key
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
    elif weights is None and lite_key(name) is None:
        weights = 'random'  # PaddleClas ships none: say nothing, random is the default
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            clf = build_classifier(name, weights=weights, num_classes=num_classes,
                                   input_size=spec['input_size'],
                                   output_stride=spec['output_stride'])
    except (ValueError, FileNotFoundError) as e:
        raise PSSLError(f'{path}: model.name {name!r}: {one_line(e)}')
    if load_path:
        _load_by_shape(clf.model, load_path, clf.fc_layer)
    elif weights is None:   # an EfficientNet-Lite: say where its start comes from
        from ..classifiers import efficientnet_lite_weights_path
        _log(f'model.weights null: {name} starts from the ImageNet-1k weights of '
             f'{efficientnet_lite_weights_path(name)}'
             + ('' if num_classes == 1000 else f', its classifier layer random ({num_classes} classes)'))
    return clf


def _load_by_shape(model, path, fc_layer):
    """Load every key of ``path`` whose shape fits; only the classifier layer
    may mismatch (another class count), anything else is an error."""
    state = safe_load(path)
    own = model.state_dict()
    fc_names = {p.name for p in fc_layer.parameters()} if fc_layer is not None else set()
    fc_keys = {k for k, v in own.items() if getattr(v, 'name', None) in fc_names}
    fits = {k: v for k, v in state.items() if k in own and list(v.shape) == list(own[k].shape)}
    bad = sorted(k for k in own if k not in fits and k not in fc_keys)
    if bad:
        from ..utils.checkpoint import first_mismatch
        first = first_mismatch(state, {k: v for k, v in own.items() if k not in fc_keys})
        raise PSSLError(f'{path}: model.weights do not fit {type(model).__name__}: {len(bad)} '
                        f'parameters missing or of another shape, first: {first}')
    with warnings.catch_warnings():  # Paddle warns per skipped key; one line instead
        warnings.simplefilter('ignore')
        model.set_state_dict(fits)
    skipped = sorted(set(own) - set(fits))
    _log(f'model.weights {path}: loaded {len(fits)} tensors'
         + (f', classifier layer {skipped} left random (another class count)' if skipped else ''))


# ------------------------------------------------------------------- train
def train_classifier(cfg, save_dir, use_vdl=False, log_every=10, resume=None,
                     config_path='<config>', overwrite=False, break_lock=False):
    """Train as the module docstring describes; returns the result dict that
    is also written to ``<save_dir>/train_cls.json``:
    ``weights``, ``class_names``, ``num_classes``, ``iters``, ``train_acc_final``
    (mean over the last ``log_every`` iterations, augmented, train mode),
    ``train_acc_best`` (best such window), ``train_acc_eval`` (eval mode, whole
    train split), ``val_acc`` / ``val_acc_best`` (None without a val split),
    ``history`` (one entry per iteration), ``seconds``, ``iters_per_min``.
    The loop itself is :func:`.loop.run_training`. ``save_dir`` is claimed
    first (:func:`~paddle_pssl.utils.save_dir.claim_save_dir`: an earlier
    run there is refused unless ``overwrite``; one run at a time).
    """
    cfg = validate('classifier', cfg, config_path)
    fns = ModelFns(_build_model, compute_losses, evaluate_accuracy, make_fs_loss)
    # A fresh name space per run: parameter and optimizer-accumulator names
    # (the keys of model.pdopt) then do not depend on what the process built
    # before, so --resume matches them, and PaddleClas nets with fixed
    # ParamAttr names (ShuffleNetV2, MobileNetV2, GhostNet) train twice per process.
    with claim_save_dir(save_dir, resume, '--resume', overwrite, break_lock, CLASSIFIER_OUTPUTS,
                        with_state=True), paddle.utils.unique_name.guard():
        return run_training(cfg, save_dir, fns, use_vdl, log_every, resume, config_path)


# --------------------------------------------------------------------- CLI
def train_cls_main(argv=None):
    """``tools/train_cls.py``: parse flags, load the YAML, call :func:`train_classifier`."""
    from ..config import load_yaml
    from ..utils.cli import ArgumentParser, add_config_args, add_save_dir_args, setup_runtime

    p = ArgumentParser('Train an image classifier (optionally with HFPL losses) '
                       'whose explanations become PSSL labels.')
    add_config_args(p, 'train_dataset.image_root=data/my_classes batch_size=16')
    p.add_argument('--save_dir', default=None,
                   help='default: output/classifiers/<config name>')
    p.add_argument('--iters', type=int, default=None, help='overrides iters (and epochs)')
    p.add_argument('--batch_size', type=int, default=None)
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--num_workers', type=int, default=None,
                   help='reader processes (overrides train_dataset.num_workers)')
    p.add_argument('--resume', default=None, help='checkpoint directory, e.g. <save_dir>/iter_100')
    p.add_argument('--save_interval', type=int, default=None,
                   help='checkpoint every N iterations (overrides save_interval)')
    p.add_argument('--log_iters', type=int, default=10)
    p.add_argument('--use_vdl', action='store_true', help='log to VisualDL in save_dir')
    add_save_dir_args(p)
    args = p.parse_args(argv)

    dic = load_yaml(args.cfg, args.opts)
    if args.iters is not None:
        dic['iters'], dic['epochs'] = args.iters, None
    for key in ('batch_size', 'seed', 'save_interval'):
        if getattr(args, key) is not None:
            dic[key] = getattr(args, key)
    if args.num_workers is not None:
        dic.setdefault('train_dataset', {})['num_workers'] = args.num_workers
    merged = validate('classifier', dic, args.cfg)  # refuse bad keys before touching the device
    save_dir = args.save_dir or os.path.join(
        'output', 'classifiers', os.path.splitext(os.path.basename(args.cfg))[0])
    setup_runtime(args.device, merged['seed'])
    return train_classifier(dic, save_dir, use_vdl=args.use_vdl, log_every=args.log_iters,
                            resume=args.resume, config_path=args.cfg, overwrite=args.overwrite,
                            break_lock=args.break_lock)
