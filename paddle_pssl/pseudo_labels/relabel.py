"""Cyclic relabelling (PMM part iv): a segmentation model trained on pseudo
labels predicts its own training set, and the predictions become a new label
store (format of :mod:`paddle_pssl.pseudo_labels.store`) for a fresh model.

Prediction: the config's val_dataset transforms (else the ``Normalize`` of its
train_dataset), then for every scale in ``scales`` and, with
``flip_horizontal``, its mirror image, the logits are resized back to the
input and soft-maxed; the softmax is averaged over all passes (and resized
to the image if the transforms resized it).

Class weights of the training loss are undone first (``class_weights:
'from_loss'``, the default): a model trained with weighted CE (upstream's
background weight 0.1) estimates q(y) proportional to w_y p(y), so the
probabilities used below are q(y) / w_y, renormalised. Without this a
background weight of 0.1 makes the model paint most of every image as object.

Rule (``rule``), with c the image's class and 1000 the background, on those
probabilities P:
    'image_label' (default)  object where P(c) > P(background): the image-level
                             label is known, so as PMM's CAMs the decision is
                             only between the image's class and background;
                             confidence = max(P(c), P(bg)) / (P(c) + P(bg)).
    'argmax'                 object where argmax over all classes == c (a pixel
                             taken by another class becomes background);
                             confidence = the winning probability.

The label store is written by :class:`.writer.LabelStoreWriter` (chunks of
``batch_size`` images of the shard's list, atomic files, stats, manifest); an
image whose label exists is not predicted again, as eval-mode predictions do
not depend on the batch.
"""
import os

import numpy as np

from . import store
from .writer import Label, LabelStoreWriter
from ..datasets.classification_set import SourceItem, list_source
from ..utils.errors import PSSLError
from ..utils.io import read_image_bgr

RULES = ('image_label', 'argmax')
CLASS_WEIGHTS = ('from_loss', 'none')


def items_from_store(image_root, pssl_root):
    """SourceItems for every label listed in ``<pssl_root>/train.txt``."""
    labels, names = store.list_labels(pssl_root)
    items = []
    for rel_label, class_id, name in labels:
        rel = store.image_relpath(rel_label)
        items.append(SourceItem(os.path.join(image_root, rel), rel, class_id, name))
    return items, names


def eval_transforms(cfg):
    """Deterministic input transforms of a PaddleSeg config: val_dataset's,
    else the ``Normalize`` entries of train_dataset (random crops, flips and
    scalings of training must not touch the image being relabelled)."""
    from paddleseg.transforms import Normalize

    from ..config.paddleseg import seg_builder
    builder = seg_builder(cfg)
    if cfg.val_dataset_cfg:
        return builder.val_transforms
    entries = [t for t in cfg.train_dataset_cfg.get('transforms', []) if t.get('type') == 'Normalize']
    return [builder.build_component(dict(t)) for t in entries] or [Normalize()]


def loss_class_weights(cfg, num_classes=store.NUM_CLASSES):
    """Per-class weights [C] of the config's first loss (``weight`` list, or
    ``background_weight`` at ``background_index``), None if it has neither."""
    types = (cfg.dic.get('loss') or {}).get('types') or []
    if not types:
        return None
    loss = types[0]
    if loss.get('weight') is not None:
        return np.asarray(loss['weight'], np.float64)
    if loss.get('background_weight') is None:
        return None
    weights = np.ones(num_classes, np.float64)
    background = loss.get('background_index')
    weights[num_classes - 1 if background is None else int(background)] = float(loss['background_weight'])
    return weights


def load_model(config_path, model_path, opts=None):
    """(model in eval mode, transforms, class weights of its loss or None,
    the name of its training label space) from a PaddleSeg-schema config and
    weights."""
    from ..config import load_config
    from ..utils.model_fit import load_trained
    if not os.path.isfile(model_path or ''):
        raise PSSLError(f'{model_path}: --model_path file not found')
    cfg = load_config(config_path, opts=opts)
    from ..config.paddleseg import seg_builder
    model = seg_builder(cfg, config_path).model   # fills model.num_classes from the label space
    load_trained(model, model_path)   # the trained model itself, every parameter
    model.eval()
    space = (cfg.dic.get('train_dataset') or {}).get('label_space', 'upstream')
    num_classes = cfg.dic['model'].get('num_classes') or store.NUM_CLASSES
    return model, eval_transforms(cfg), loss_class_weights(cfg, num_classes), space


def predict_probs(model, batch, scales=(1.0,), flip_horizontal=False, channels=None):
    """Softmax averaged over scales and flips.

    batch: float32 [N, 3, H, W] (already normalised). ``channels`` [N, K]
    int: keep only these classes per image (memory: N x K x H x W instead
    of N x C x H x W). -> numpy float32 [N, C or K, H, W].
    """
    import paddle
    import paddle.nn.functional as F
    x = paddle.to_tensor(batch)
    h, w = batch.shape[2:]
    total, passes = None, 0
    with paddle.no_grad():
        for scale in scales:
            size = [max(int(h * scale + 0.5), 1), max(int(w * scale + 0.5), 1)]
            xs = x if size == [h, w] else F.interpolate(x, size, mode='bilinear')
            for flip in ([False, True] if flip_horizontal else [False]):
                xi = paddle.flip(xs, axis=[3]) if flip else xs
                logit = model(xi)[0]
                if flip:
                    logit = paddle.flip(logit, axis=[3])
                if logit.shape[2:] != [h, w]:
                    logit = F.interpolate(logit, [h, w], mode='bilinear')
                prob = F.softmax(logit, axis=1)
                if channels is not None:
                    if int(np.max(channels)) >= prob.shape[1]:
                        raise PSSLError(f'the model predicts {prob.shape[1]} classes; class '
                                        f'{int(np.max(channels))} is out of range (a PSSL model '
                                        f'has {store.NUM_CLASSES})')
                    prob = paddle.stack([paddle.index_select(prob[i], paddle.to_tensor(c), axis=0)
                                         for i, c in enumerate(np.asarray(channels, np.int64))])
                total = prob if total is None else total + prob
                passes += 1
    return (total / passes).numpy()


def label_from_probs(probs, class_id, rule='image_label', weights=None):
    """(mask uint8 [H, W], confidence float32 [H, W]) for one image.

    'image_label': probs [2, H, W] = (P(bg), P(c)). 'argmax': probs [C, H, W].
    ``weights`` (one per channel of ``probs``): the training loss's class
    weights, divided out and renormalised before deciding.
    """
    probs = np.asarray(probs, np.float64)
    if weights is not None:
        weights = np.asarray(weights, np.float64).reshape(-1)
        if weights.shape[0] != probs.shape[0]:
            raise PSSLError(f'{weights.shape[0]} class weights for {probs.shape[0]} predicted classes')
        probs = probs / weights[:, None, None]
        probs = probs / np.maximum(probs.sum(axis=0, keepdims=True), 1e-30)
    if rule == 'image_label':
        p_bg, p_c = probs[0], probs[1]
        mask = (p_c > p_bg).astype(np.uint8)
        confidence = np.maximum(p_c, p_bg) / np.maximum(p_c + p_bg, 1e-12)
    elif rule == 'argmax':
        winner = probs.argmax(axis=0)
        mask = (winner == class_id).astype(np.uint8)
        confidence = probs.max(axis=0)
    else:
        raise PSSLError(f'relabel rule {rule!r}; choose one of {RULES}')
    return mask, confidence.astype(np.float32)


class Relabeller:
    """Predicts ``items`` with ``model`` into a new label store at ``root``."""

    def __init__(self, model, transforms, items, class_names, root, scales=(1.0,),
                 flip_horizontal=False, rule='image_label', batch_size=8, info=None,
                 class_weights=None, label_space='upstream'):
        if rule not in RULES:
            raise PSSLError(f'relabel rule {rule!r}; choose one of {RULES}')
        if not items:
            raise PSSLError(f'{root}: nothing to relabel (empty image list)')
        if not scales or min(scales) <= 0:
            raise PSSLError(f'--scales {scales}: need positive scales')
        from paddleseg.transforms import Compose
        self.model, self.compose = model, Compose(list(transforms))
        self.items, self.class_names, self.root = items, class_names, root
        self.scales, self.flip = [float(s) for s in scales], bool(flip_horizontal)
        self.rule, self.batch_size = rule, max(int(batch_size), 1)
        # the model's outputs: the store's classes in the space it was trained in
        self.space = store.LabelSpace(label_space, max(len(class_names), 1), 'label_space')
        self.class_weights = None if class_weights is None else np.asarray(class_weights, np.float64)
        self.info = dict(info or {}, scales=self.scales, flip_horizontal=self.flip, rule=rule,
                         class_weights_undone=None if class_weights is None else
                         {str(i): float(w) for i, w in enumerate(self.class_weights) if w != 1})

    def _store_writer(self):
        return LabelStoreWriter(self.root, self.items, self.class_names, self.batch_size,
                                desc='relabel')

    def label_path(self, item):
        return os.path.join(self.root, store.label_relpath(item.rel))

    def _input(self, bgr):
        data = self.compose({'img': bgr.astype('float32'), 'trans_info': []})
        return np.asarray(data['img'], np.float32)

    def _read(self, item):
        bgr = read_image_bgr(item.image_path)
        return self._input(bgr), bgr.shape[:2]

    def run(self, shard=None, progress=True):
        writer = self._store_writer()
        counts = writer.run(lambda chunk, start: self._run_chunk(writer, chunk), shard, progress)
        self.finalize()
        return counts

    def _run_chunk(self, writer, chunk):
        """Predict the chunk's images without a label; yield their Labels."""
        by_shape = {}
        for item, (image, size) in writer.read([it for it in chunk if not writer.has_label(it)],
                                                self._read):
            by_shape.setdefault(image.shape, []).append((item, image, size))
        for group in by_shape.values():   # one forward per image size
            batch = np.stack([image for _, image, _ in group])
            channels = None
            if self.rule == 'image_label':
                channels = [[self.space.background, self.space.class_id(item.class_id)]
                            for item, _, _ in group]
            probs = predict_probs(self.model, batch, self.scales, self.flip, channels)
            for (item, _, size), p in zip(group, probs):
                if tuple(p.shape[1:]) != tuple(size):    # the transforms resized the image
                    import paddle
                    p = paddle.nn.functional.interpolate(
                        paddle.to_tensor(p[None]), list(size), mode='bilinear')[0].numpy()
                if self.rule == 'argmax' and p.shape[0] != self.space.num_classes:
                    raise PSSLError(f'the model predicts {p.shape[0]} classes; relabelling needs '
                                    f'its training label space ({self.space})')
                weights = self.class_weights
                if weights is not None and self.rule == 'image_label':
                    weights = weights[[self.space.background, self.space.class_id(item.class_id)]]
                mask, confidence = label_from_probs(p, self.space.class_id(item.class_id), self.rule, weights)
                yield Label(item, mask, confidence)

    def finalize(self):
        """train.txt (labels on disk, in list order), synsets, manifest."""
        return self._store_writer().finalize(head={'relabel': self.info}, foreground_share=True)


def relabel_main(argv=None):
    """tools/relabel.py"""
    from ..utils.cli import ArgumentParser, add_config_args, setup_runtime
    p = ArgumentParser('Cyclic relabelling: predict the training set with a trained PSSL '
                       'model into a new label store.')
    add_config_args(p, 'model.backbone.output_stride=8')
    p.add_argument('--model_path', required=True, help='model.pdparams of the trained model')
    p.add_argument('--image_root', required=True, help='the source images (<root>/train/<class>/*)')
    p.add_argument('--pssl_root', default=None,
                   help='relabel the images listed in this store (its train.txt and synsets)')
    p.add_argument('--synsets', default=None,
                   help='without --pssl_root: every image under --image_root, class ids from this file')
    p.add_argument('--file_list', default=None, help='without --pssl_root: "<path> <class_id>" lines')
    p.add_argument('--save_root', required=True, help='the new label store')
    p.add_argument('--scales', nargs='+', type=float, default=[1.0])
    p.add_argument('--flip_horizontal', action='store_true')
    p.add_argument('--rule', default='image_label', choices=RULES)
    p.add_argument('--class_weights', default='from_loss', choices=CLASS_WEIGHTS,
                   help="from_loss: undo the config loss's class weights (e.g. background 0.1) "
                        'before deciding; none: use the raw softmax')
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--shard', default=None, help='i/N: every N-th image starting at i')
    p.add_argument('--no_progress', action='store_true')
    p.add_argument('--finalize_only', action='store_true',
                   help='only rewrite train.txt and manifest.json (after shards ran apart)')
    args = p.parse_args(argv)

    if args.pssl_root and os.path.abspath(args.pssl_root) == os.path.abspath(args.save_root):
        raise PSSLError(f'{args.save_root}: --save_root must differ from --pssl_root')
    if args.pssl_root:
        items, names = items_from_store(args.image_root, args.pssl_root)
    else:
        items, names = list_source(args.image_root, args.file_list, args.synsets)
    shard = None
    if args.shard:
        try:
            shard = tuple(int(v) for v in args.shard.split('/'))
        except ValueError:
            raise PSSLError(f'--shard {args.shard!r}: expected i/N, e.g. 0/4')
    setup_runtime(args.device)
    model, transforms, weights, space = (None, [], None, 'upstream') if args.finalize_only else \
        load_model(args.cfg, args.model_path, args.opts)
    if args.class_weights == 'none':
        weights = None
    info = {'config': os.path.abspath(args.cfg), 'model_path': os.path.abspath(args.model_path),
            'image_root': os.path.abspath(args.image_root),
            'source_store': os.path.abspath(args.pssl_root) if args.pssl_root else None}
    relabeller = Relabeller(model, transforms, items, names, args.save_root, args.scales,
                            args.flip_horizontal, args.rule, args.batch_size, info, weights, space)
    if args.finalize_only:
        manifest = relabeller.finalize()
        print(f"{manifest['labels']} labels listed in {args.save_root}/{store.FILE_LIST}")
        return manifest
    counts = relabeller.run(shard=shard, progress=not args.no_progress)
    print(f"written {counts['written']}, already there {counts['existing']}, skipped "
          f"{counts['skipped']} in {counts['seconds']} s; labels in {args.save_root}")
    return counts
