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
"""
import os

import cv2
import numpy as np

from . import consensus as cons
from . import pmm as pmm_ops
from . import store
from .writer import Label, LabelStoreWriter, image_seed, shard_of, shard_tag
from ..datasets.classification_set import list_source
from ..config import PMM_NORMALIZE, validate
from ..utils.errors import PSSLError
from ..utils.io import read_image_any


def consensus_as_cam(consensus, normalize='threshold', threshold='mean', value=1.0):
    """The consensus map scaled to PMM's CAM range [0, 1] (see PMM_NORMALIZE)."""
    consensus = np.asarray(consensus, np.float32)
    peak = float(consensus.max())
    if normalize == 'max':
        low = 0.0
    elif normalize == 'minmax':
        low = float(consensus.min())
    elif normalize == 'threshold':
        low = cons.threshold_value(consensus, threshold, value)
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


def _read_rgb(item):
    bgr, note = read_image_any(item.image_path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), note


def _colour(saliency):
    heat = cv2.applyColorMap((np.clip(saliency, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)


class PseudoLabelGenerator:
    """Build once from a config dict, then ``run(shard=...)``."""

    def __init__(self, cfg, config_path='<config>'):
        self.cfg = validate('generator', cfg, config_path)
        self.config_path = config_path
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
                                out['on_bad_image'], desc='PSSL labels')

    def label_path(self, item):
        return os.path.join(self.root, store.label_relpath(item.rel))

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
        writer.counts['converted'] += sum(1 for _, (_, note) in good if note)
        if not good:
            return
        images = [image for _, (image, _) in good]
        seeds = [image_seed(self.cfg['seed'], item.rel) for item, _ in good]
        maps = self.explain(images, [item.class_id for item, _ in good], seeds)
        c = self.cfg['consensus']
        for k, ((item, (_, note)), image, image_maps) in enumerate(zip(good, images, maps)):
            names = sorted(image_maps)
            weights = None if c['weights'] is None else [c['weights'].get(n.split('/')[-1], 1.0)
                                                          for n in names]
            consensus, mask, confidence = cons.make_pseudo_label(
                [image_maps[n] for n in names], weights, c['renormalize'], c['threshold'], c['value'])
            if writer.has_label(item):
                continue
            if c['postprocess'] == 'pmm':
                mask, confidence = self._pmm(image, consensus, item.class_id)
            yield Label(item, mask, confidence, {
                'converted': note, 'map_means': {n: round(float(image_maps[n].mean()), 4) for n in names}})
            if self._on_maps is not None:
                self._on_maps(item, image_maps, mask)
            if vdl is not None and (start + k) % self.cfg['output']['vdl_every'] == 0:
                step = start + k
                vdl.add_image('PSSL/image', image, step)
                for n in names:
                    vdl.add_image(f'PSSL/{n}', _colour(image_maps[n]), step)
                vdl.add_image('PSSL/consensus', _colour(consensus), step)
                vdl.add_image('PSSL/mask', (np.repeat(mask[..., None], 3, -1) * 255).astype(np.uint8), step)

    def _pmm(self, image, consensus, class_id):
        """PMM on the consensus as the image's one CAM -> (mask, confidence)."""
        c, p = self.cfg['consensus'], self.cfg['consensus']['pmm']
        cam = consensus_as_cam(consensus, p['normalize'], c['threshold'], c['value'])
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
