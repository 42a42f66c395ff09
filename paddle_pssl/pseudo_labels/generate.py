"""PSSL label generation: classified images -> explanations of several
classifiers -> consensus -> pseudo masks with confidence, in the label store
format of :mod:`paddle_pssl.pseudo_labels.store`. With ``consensus.postprocess:
pmm`` the mask and confidence come from PMM's CoV smoothing and proportional
pseudo-mask generation (:mod:`.pmm`, dense CRF) on the consensus instead.

Work is cut into fixed chunks of ``batch_size`` images of the shard's list. A
chunk whose labels all exist is skipped; otherwise the whole chunk is
explained again (so batches, and with per-image seeds the noise of SmoothGrad
and LIME, are the same as in an uninterrupted run) and only missing files are
written, each atomically. Shards take every N-th image; under
``paddle.distributed.launch`` each rank takes its own shard.

The store records the settings that change labels (:meth:`PseudoLabelGenerator.label_settings`)
and refuses a run with other ones (see :mod:`.store_guard`). Rule: a label
depends on the image, its class id, the seed, the classifiers (with their
weights' content), the explainers and the consensus (its ``pmm`` block only
with ``postprocess: pmm``); ``output.*`` does not: seeds are per image, and
batch sizes 1 and 4 gave bit-identical labels for CAM, SmoothGrad and LIME.
The source is identified by image_root and a digest of its (path, class) list.

A run whose classifiers cannot know the source's classes is refused before
any work (:meth:`PseudoLabelGenerator._check_classes`). Images above
``consensus.WORK_MAX_SIDE`` pixels a side are labelled at a bounded working
resolution and written at their own size (see :mod:`.consensus`); one that
still runs out of memory is skipped with its reason, the rest of its batch
labelled.
"""
import hashlib
import os
import re

import cv2
import numpy as np

from . import consensus as cons
from . import pmm as pmm_ops
from . import store
from .store_guard import file_sha256
from .writer import Label, LabelStoreWriter, image_seed, shard_of, shard_tag
from ..datasets.classification_set import list_source
from ..config import PMM_NORMALIZE, validate
from ..utils.errors import PSSLError
from ..utils.io import image_size, read_image_any


def consensus_as_cam(consensus, normalize='threshold', threshold='mean', value=1.0, bias=0.0):
    """The consensus map scaled to PMM's CAM range [0, 1] (see PMM_NORMALIZE;
    'threshold' starts at the mask rule's cut, ``bias`` included)."""
    consensus = np.asarray(consensus, np.float32)
    peak = float(consensus.max())
    if normalize == 'max':
        low = 0.0
    elif normalize == 'minmax':
        low = float(consensus.min())
    elif normalize == 'threshold':
        low = cons.threshold_value(consensus, threshold, value, bias)
    else:
        raise PSSLError(f'consensus.pmm.normalize {normalize!r}; choose one of {PMM_NORMALIZE}')
    if peak <= low:
        return np.zeros_like(consensus)   # no evidence anywhere: PMM gives background
    return np.clip((consensus - low) / (peak - low), 0.0, 1.0)


def load_classifiers(entries):
    """[(label, Classifier)] from the config's classifier list; the explainers
    take the Classifier itself."""
    from ..classifiers import build_classifier
    out = []
    for entry in entries:
        entry = dict(entry)
        name = entry.pop('name', None)
        if not name:
            raise PSSLError('classifiers: every entry needs a name')
        label = entry.pop('label', name)
        try:
            classifier = build_classifier(name, **entry)
        except (ValueError, ImportError, FileNotFoundError, KeyError) as e:
            raise PSSLError(f'classifier {name}: {e}'.splitlines()[0])
        out.append((label, classifier))
    return out


def _to_input(images_rgb, classifier):
    """Stretch each RGB uint8 image to the classifier's square input, normalise, NCHW."""
    size = classifier.input_size
    batch = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images_rgb])
    return classifier.normalize(batch)


def _out_of_memory(item, stage, error):
    """The PSSLError that skips ``item`` when ``stage`` ran out of memory."""
    size = image_size(item.image_path)
    what = f'{size[0]}x{size[1]} image' if size else 'image'
    first = str(error).strip().splitlines()[-1][:160] if str(error).strip() else type(error).__name__
    return PSSLError(f'{item.image_path}: {what}: out of memory while {stage} it ({first})')


def _read_rgb(item):
    """-> (RGB image at the working resolution, conversion note, (H, W) of
    the file); running out of memory skips the image (a PSSLError)."""
    try:
        return _read_working(item)
    except MemoryError as e:
        raise _out_of_memory(item, 'reading', e) from None
    except cv2.error as e:
        if 'Insufficient memory' not in str(e):
            raise
        raise _out_of_memory(item, 'reading', e) from None


def _read_working(item):
    size = image_size(item.image_path)   # the header only
    huge = size is not None and max(size) > cons.WORK_MAX_SIDE
    bgr, note = read_image_any(item.image_path, reduce_to=cons.HUGE_WORK_SIDE if huge else None)
    full = (size[1], size[0]) if huge else bgr.shape[:2]
    work = cons.working_shape(full)
    if work != full:   # the full image is freed here
        bgr = cv2.resize(bgr, work[::-1], interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), note, full


def _colour(saliency):
    heat = cv2.applyColorMap((np.clip(saliency, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)


class PseudoLabelGenerator:
    """Build once from a config dict, then ``run(shard=...)``."""

    def __init__(self, cfg, config_path='<config>', allow_mixed_settings=False, break_lock=False):
        self.cfg = validate('generator', cfg, config_path)
        from ..explainers import check_explainer_options
        problem = check_explainer_options(self.cfg['explainers'])   # before the store is touched
        if problem:
            raise PSSLError(f'{config_path}: {problem}')
        self.config_path = config_path
        self.allow_mixed_settings, self.break_lock = allow_mixed_settings, break_lock
        src = self.cfg['source']
        self.items, self.class_names = list_source(src['image_root'], src['file_list'], src['synsets'])
        if not self.items:
            raise PSSLError(f"{src['image_root']}: no images found")
        self.root = self.cfg['output']['pssl_root']
        if self.cfg['consensus']['postprocess'] == 'pmm':
            try:
                pmm_ops._densecrf_module()   # fail now, in one line, not after the first batch
            except ImportError as e:
                raise PSSLError(f'{config_path}: consensus.postprocess pmm: {e}')
            self._crf_params = pmm_ops.DenseCRFParams(**self.cfg['consensus']['pmm']['crf'])
        self._classifiers = None
        self._ensembles = None
        self._on_maps = None
        self._settings = None
        # models load lazily (a complete store needs none): check names and weights now
        self.label_settings()
        self._check_classes()

    def _check_classes(self):
        """Refuse classifiers that cannot know the source's classes: the
        explained class is the source's class id, so a 1000-class (ImageNet)
        classifier needs the source's ids to be ImageNet's (1000 wnids in
        source.synsets), and a K-class one a source of K classes."""
        names, synsets = self.class_names, self.cfg['source']['synsets']
        shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
        own = 'train a classifier on this source with tools/train_cls.py (then give its ' \
              'weights and num_classes here)'
        for i, entry in enumerate(self.cfg['classifiers']):
            key = f"{self.config_path}: classifiers.{i} ({entry['name']})"
            count = entry.get('num_classes') or 1000
            if count == 1000:
                imagenet = synsets is not None and len(names) == 1000 and \
                    all(re.fullmatch(r'n\d{8}', n) for n in names)
                if not imagenet:
                    raise PSSLError(f'{key} explains the 1000 ImageNet classes, but the source has '
                                    f'{len(names)} classes ({shown}) without ImageNet ids: give '
                                    f'the 1000 ImageNet wnids in source.synsets (line = class id), '
                                    f'or {own}')
            elif count != len(names):
                raise PSSLError(f'{key} has {count} outputs, the source has {len(names)} '
                                f'classes ({shown}): its class ids would name other classes; '
                                f'{own}')

    def _classifier_settings(self):
        """The classifier entries with defaults filled and the weights named by
        content; an unknown name or a missing weights file stops here."""
        from ..classifiers.default_cfgs import default_cfg, lite_key
        out = []
        for i, entry in enumerate(self.cfg['classifiers']):
            key = f'{self.config_path}: classifiers.{i}'
            name, weights = entry.get('name'), entry.get('weights')
            lite = lite_key(name)
            if lite is None:
                from ..classifiers.registry import available_classifiers, paddleclas_architectures
                try:
                    known = name in paddleclas_architectures()
                except ImportError:
                    known = False
                if not known:
                    raise PSSLError(f'{key}.name {name!r} is not a classifier; EfficientNet-Lite: '
                                    f'{available_classifiers()}, or a PaddleClas architecture')
            if weights is None and lite is not None:
                from ..classifiers.efficientnet_lite import efficientnet_lite_weights_path
                try:
                    weights = efficientnet_lite_weights_path(lite)
                except (ImportError, FileNotFoundError) as e:
                    raise PSSLError(f'{key}.name {name}: {e}'.splitlines()[0])
            elif weights is not None and str(weights).lower() not in ('random', 'none', 'scratch'):
                if not os.path.isfile(weights):
                    raise PSSLError(f'{weights}: {key}.weights file not found')
            else:
                weights = None
            out.append({'name': lite or name, 'label': entry.get('label') or name,
                        'weights_sha256': file_sha256(weights) if weights else None,
                        'num_classes': entry.get('num_classes') or 1000,
                        'feature_layer_name': entry.get('feature_layer_name'),
                        'input_size': default_cfg(name, entry.get('input_size')).input_size,
                        # only when set: stores made before the key keep their fingerprint
                        **({'output_stride': entry['output_stride']}
                           if entry.get('output_stride', 32) != 32 else {})})
        return out

    def label_settings(self):
        """Every setting that changes a label (the rule is in the module docstring)."""
        if self._settings is None:
            c = dict(self.cfg['consensus'])
            if c['postprocess'] != 'pmm':
                c.pop('pmm')
            # only when set: stores made before these keys keep their fingerprint
            if not c['cut_bias']:
                c.pop('cut_bias')
            if not c['per_classifier']:
                c.pop('per_classifier')
                c.pop('quorum')
            explainers = self.cfg['explainers']
            if isinstance(explainers, (list, tuple)):
                explainers = {name: {} for name in explainers}
            listing = hashlib.sha256(''.join(f'{it.rel}\t{it.class_id}\t{it.class_name}\n'
                                             for it in self.items).encode()).hexdigest()
            self._settings = {
                'seed': self.cfg['seed'], 'classifiers': self._classifier_settings(),
                'explainers': explainers, 'consensus': c,
                'source': {'image_root': os.path.realpath(self.cfg['source']['image_root']),
                           'images_sha256': listing}}
        return self._settings

    # -- model side -------------------------------------------------------
    def _ensure_models(self):
        if self._ensembles is not None:
            return
        from ..explainers import ExplainerEnsemble
        self._classifiers = load_classifiers(self.cfg['classifiers'])
        explainers = self.cfg['explainers']
        if isinstance(explainers, (list, tuple)):
            explainers = {name: {} for name in explainers}
        self._ensembles = []
        self.dropped = {}
        for label, classifier in self._classifiers:
            own = dict(explainers)
            if 'cam' in own and classifier.fc_layer is None:
                # the exact CAM needs global pooling + one linear layer at the end
                own.pop('cam')
                self.dropped[label] = ['cam']
                from paddleseg.utils import logger
                logger.warning(f'{label}: no exact CAM (its head is not pooling + linear); '
                               f'using its other explainers')
            if 'gradcam' in own:
                gradcam = dict(own['gradcam'] or {})
                if gradcam.pop('only_without_cam', False) and 'cam' in own:
                    # on pooling + linear heads Grad-CAM's map is CAM's: counted once
                    own.pop('gradcam')
                    self.dropped.setdefault(label, []).append('gradcam')
                else:
                    own['gradcam'] = gradcam
            if not own:
                raise PSSLError(f'{label}: none of the configured explainers applies')
            self._ensembles.append(ExplainerEnsemble(classifier, own, engine=self.cfg['explainers_engine'],
                                                     seed=self.cfg['seed']))

    def explain(self, images_rgb, class_ids, seeds):
        """{'<classifier>/<explainer>': [maps at each image's size]} for a batch."""
        self._ensure_models()
        per_image = [dict() for _ in images_rgb]
        for (label, classifier), ensemble in zip(self._classifiers, self._ensembles):
            x = _to_input(images_rgb, classifier)
            maps = ensemble(x, np.asarray(class_ids, np.int64), seeds=seeds)
            for name, batch_maps in maps.items():
                for i, image in enumerate(images_rgb):
                    h, w = image.shape[:2]
                    per_image[i][f'{label}/{name}'] = cv2.resize(
                        batch_maps[i], (w, h), interpolation=cv2.INTER_LINEAR)
        return per_image

    # -- the run ----------------------------------------------------------
    def _store_writer(self):
        out = self.cfg['output']
        return LabelStoreWriter(self.root, self.items, self.class_names, int(out['batch_size']),
                                out['on_bad_image'], desc='PSSL labels',
                                settings=self.label_settings(),
                                allow_mixed=self.allow_mixed_settings, break_lock=self.break_lock)

    def label_path(self, item):
        return self._store_writer().label_path(item)

    def shard_items(self, shard):
        index, count = shard
        return self.items[index::count]

    def run(self, shard=None, progress=True, max_images=None, on_maps=None):
        """Label the shard; ``on_maps(item, image_maps, mask)`` (optional) sees
        every newly labelled image's maps, e.g. to score explainers alone."""
        self._on_maps = on_maps
        shard = shard_of(shard)
        writer = self._store_writer()
        vdl = self._vdl_writer(shard_tag(shard)) if self.cfg['output']['vdl_every'] else None
        try:
            counts = writer.run(lambda chunk, start: self._run_chunk(writer, chunk, start, vdl),
                                shard, progress, max_images, extra_counts=('converted',))
        finally:
            if vdl is not None:
                vdl.close()
        self.finalize()
        return counts

    def _run_chunk(self, writer, chunk, start, vdl):
        """Explain the whole chunk; yield a Label for each image without one."""
        good = writer.read(chunk, _read_rgb)
        writer.counts['converted'] += sum(1 for _, (_, note, _) in good if note)
        if not good:
            return
        images = [image for _, (image, _, _) in good]
        seeds = [image_seed(self.cfg['seed'], item.rel) for item, _ in good]
        maps = self.explain(images, [item.class_id for item, _ in good], seeds)
        for k, ((item, (_, note, full)), image, image_maps) in enumerate(zip(good, images, maps)):
            if writer.has_label(item):
                continue
            try:
                label = self._label(item, note, full, image, image_maps, start + k, vdl)
            except MemoryError as e:
                # the image is skipped with its reason; the rest of the batch goes on
                writer.skip(item, _out_of_memory(item, 'labelling', e))
                continue
            yield label
            del label

    def _label(self, item, note, full, image, image_maps, step, vdl):
        """One image's Label from its maps (at the working resolution), with
        its mask and confidence at the image's own size ``full``."""
        c = self.cfg['consensus']
        names = sorted(image_maps)
        weights = None if c['weights'] is None else [c['weights'].get(n.split('/')[-1], 1.0)
                                                      for n in names]
        rule = dict(renorm=c['renormalize'], method=c['threshold'], value=c['value'], combine=c['method'],
                    member_method=c['member_threshold'], member_value=c['member_value'], bias=c['cut_bias'])
        if c['per_classifier']:
            groups = {}
            for n, w in zip(names, weights or [None] * len(names)):
                groups.setdefault(cons.classifier_of(n), []).append((image_maps[n], w))
            consensus, mask, confidence = cons.per_classifier_label(
                [([m for m, _ in g], None if weights is None else [w for _, w in g]) for g in groups.values()],
                c['quorum'], **rule)
        else:
            consensus, mask, confidence = cons.make_pseudo_label([image_maps[n] for n in names], weights, **rule)
        if c['postprocess'] == 'pmm':
            mask, confidence = self._pmm(image, consensus, item.class_id)
        if self._on_maps is not None:
            self._on_maps(item, image_maps, mask)
        if vdl is not None and step % self.cfg['output']['vdl_every'] == 0:
            vdl.add_image('PSSL/image', image, step)
            for n in names:
                vdl.add_image(f'PSSL/{n}', _colour(image_maps[n]), step)
            vdl.add_image('PSSL/consensus', _colour(consensus), step)
            vdl.add_image('PSSL/mask', (np.repeat(mask[..., None], 3, -1) * 255).astype(np.uint8), step)
        stats = {'converted': note,
                 'map_means': {n: round(float(image_maps[n].mean()), 4) for n in names}}
        if full != image.shape[:2]:
            stats['worked_at'] = [image.shape[1], image.shape[0]]
            from paddleseg.utils import logger
            logger.info(f'{item.image_path}: {full[1]}x{full[0]} pixels, labelled at '
                        f'{image.shape[1]}x{image.shape[0]} (above {cons.WORK_MAX_SIDE} px a side), '
                        f'written at full size')
            mask = cons.upscale_nearest(mask, full, np.uint8)
            confidence = cons.upscale_nearest(np.clip(confidence, 0, 1).astype(np.float16), full,
                                              np.float16)
        return Label(item, mask, confidence, stats)

    def _pmm(self, image, consensus, class_id):
        """PMM on the consensus as the image's one CAM -> (mask, confidence)."""
        c, p = self.cfg['consensus'], self.cfg['consensus']['pmm']
        cam = consensus_as_cam(consensus, p['normalize'], c['threshold'], c['value'], c['cut_bias'])
        label, confidence = pmm_ops.generate_pseudo_mask(
            image, cam[None], [class_id], background_id=store.BACKGROUND, t=p['t'], a=p['a'],
            smooth=p['smooth'], crf_params=self._crf_params, return_confidence=True)
        return (label == class_id).astype(np.uint8), confidence

    def _vdl_writer(self, tag):
        from visualdl import LogWriter
        return LogWriter(logdir=os.path.join(self.root, 'vdl', tag))

    def finalize(self):
        """Write train.txt (every label that exists, in source order), the
        synsets and the manifest. Safe to run from any shard at any time."""
        return self._store_writer().finalize(
            head={'config': self.cfg, 'config_path': self.config_path},
            tail={'explainers_not_applicable': getattr(self, 'dropped', {})})
