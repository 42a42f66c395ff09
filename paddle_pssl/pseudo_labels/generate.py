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
import hashlib
import json
import os
import platform
import time
import zlib  # noqa: F401  (before paddle, see paddle_pssl/_zlib_first.py)
from dataclasses import dataclass

import cv2
import numpy as np

from . import consensus as cons
from . import pmm as pmm_ops
from . import store
from ..config import PMM_NORMALIZE, validate
from ..utils.errors import PSSLError
from ..utils.io import atomic_write_text, read_image_any

IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.png', '.bmp', '.tif', '.tiff', '.webp')


@dataclass
class SourceItem:
    image_path: str
    rel: str          # image path relative to image_root, e.g. train/<class>/<file>
    class_id: int
    class_name: str


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


def list_source(image_root, file_list=None, synsets=None):
    """The classification set as SourceItems, and the class names by id.

    Class-per-folder: ``<image_root>/train/<class>/*`` (ImageNet) or
    ``<image_root>/<class>/*``. File list: lines ``<path relative to
    image_root> <class_id>``, the path's folder being the class's name (as in
    ImageNet's ``train/<wnid>/<wnid>_<n>.JPEG``), which is what the label
    store and upstream's reader rely on. ``synsets`` (a file, one class name
    per line) fixes the ids; by default the sorted class folders.
    """
    if not os.path.isdir(image_root):
        raise PSSLError(f'{image_root}: source.image_root is not a directory')
    names = store.read_synsets(synsets) if synsets else None
    items = []
    if file_list:
        if not os.path.isfile(file_list):
            raise PSSLError(f'{file_list}: source.file_list not found')
        if names is None:
            raise PSSLError(f'{file_list}: a file list needs source.synsets (class names by id)')
        with open(file_list) as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                    raise PSSLError(f'{file_list}:{lineno}: expected "<path> <class_id>"')
                rel, class_id = parts[0].replace('\\', '/'), int(parts[1])
                if not 0 <= class_id < len(names):
                    raise PSSLError(f'{file_list}:{lineno}: class id {class_id} is not in '
                                    f'{synsets} ({len(names)} classes)')
                folder = rel.split('/')[-2] if '/' in rel else ''
                if folder != names[class_id]:
                    raise PSSLError(f'{file_list}:{lineno}: {rel} is not in a folder named '
                                    f'{names[class_id]!r} (class {class_id})')
                items.append(SourceItem(os.path.join(image_root, rel), rel, class_id, names[class_id]))
        return items, names
    base, prefix = image_root, ''
    if os.path.isdir(os.path.join(image_root, 'train')):
        base, prefix = os.path.join(image_root, 'train'), 'train/'
    folders = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))
    if not folders:
        raise PSSLError(f'{base}: no class folders')
    if names is None:
        names = folders
    index = {n: i for i, n in enumerate(names)}
    for folder in folders:
        if folder not in index:
            raise PSSLError(f'{os.path.join(base, folder)}: class folder is not in {synsets}')
        for file in sorted(os.listdir(os.path.join(base, folder))):
            if file.lower().endswith(IMAGE_SUFFIXES):
                rel = f'{prefix}{folder}/{file}'
                items.append(SourceItem(os.path.join(image_root, rel), rel, index[folder], folder))
    if len(names) > store.BACKGROUND:
        raise PSSLError(f'{image_root}: {len(names)} classes; at most {store.BACKGROUND} fit PSSL')
    return items, names


def shard_of(shard=None):
    """(index, count): explicit ``(i, n)``, else the launcher's rank, else (0, 1)."""
    if shard is not None:
        index, count = shard
        if not (count >= 1 and 0 <= index < count):
            raise PSSLError(f'--shard {index}/{count}: need 0 <= i < N')
        return index, count
    rank = int(os.environ.get('PADDLE_TRAINER_ID', '0'))
    world = int(os.environ.get('PADDLE_TRAINERS_NUM', '1'))
    return rank, max(world, 1)


def image_seed(seed, rel):
    """A per-image seed independent of batch and shard."""
    digest = hashlib.sha256(f'{seed}:{rel}'.encode()).digest()
    return int.from_bytes(digest[:4], 'little') & 0x7FFFFFFF


def _classifier_spec(classifier):
    from ..explainers import ClassifierSpec
    return ClassifierSpec(
        model=classifier.model, feature_layer=classifier.feature_layer_name,
        fc_layer=classifier.fc_layer,   # read live by CAM
        mean=[m / 255.0 for m in classifier.mean], std=[s / 255.0 for s in classifier.std])


def load_classifiers(entries):
    """[(name, Classifier, ClassifierSpec)] from the config's classifier list."""
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
        out.append((label, classifier, _classifier_spec(classifier)))
    return out


def _to_input(images_rgb, classifier):
    """Stretch each RGB uint8 image to the classifier's square input, normalise, NCHW."""
    size = classifier.input_size
    batch = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images_rgb])
    mean = np.asarray(classifier.mean, np.float32)
    std = np.asarray(classifier.std, np.float32)
    return ((batch.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2).copy()


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
        for label, classifier, spec in self._classifiers:
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
            self._ensembles.append(ExplainerEnsemble(spec, own, seed=self.cfg['seed']))

    def explain(self, images_rgb, class_ids, seeds):
        """{'<classifier>/<explainer>': [maps at each image's size]} for a batch."""
        self._ensure_models()
        per_image = [dict() for _ in images_rgb]
        for (label, classifier, _), ensemble in zip(self._classifiers, self._ensembles):
            x = _to_input(images_rgb, classifier)
            maps = ensemble(x, np.asarray(class_ids, np.int64), seeds=seeds)
            for name, batch_maps in maps.items():
                for i, image in enumerate(images_rgb):
                    h, w = image.shape[:2]
                    per_image[i][f'{label}/{name}'] = cv2.resize(
                        batch_maps[i], (w, h), interpolation=cv2.INTER_LINEAR)
        return per_image

    # -- the run ----------------------------------------------------------
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
        items = self.shard_items(shard)
        out = self.cfg['output']
        batch_size = int(out['batch_size'])
        os.makedirs(self.root, exist_ok=True)
        tag = f'shard-{shard[0]}-of-{shard[1]}'
        stats_path = os.path.join(self.root, 'stats', f'{tag}.jsonl')
        skipped_path = os.path.join(self.root, 'stats', f'{tag}.skipped.jsonl')
        os.makedirs(os.path.dirname(stats_path), exist_ok=True)
        writer = self._vdl_writer(tag) if out['vdl_every'] else None
        from tqdm import tqdm
        bar = tqdm(total=len(items), desc=f'PSSL labels {tag}', disable=not progress, unit='img')
        counts = {'written': 0, 'existing': 0, 'skipped': 0, 'converted': 0}
        started = time.time()
        try:
            for start in range(0, len(items), batch_size):
                if max_images is not None and counts['written'] >= max_images:
                    break   # whole chunks only: batches stay as in a full run
                chunk = items[start:start + batch_size]
                todo = [it for it in chunk if not os.path.isfile(self.label_path(it))]
                counts['existing'] += len(chunk) - len(todo)
                if todo:
                    self._run_chunk(chunk, counts, stats_path, skipped_path, writer, start)
                bar.update(len(chunk))
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        counts['seconds'] = round(time.time() - started, 2)
        self.finalize()
        return counts

    def _run_chunk(self, chunk, counts, stats_path, skipped_path, writer, start):
        good, images = [], []
        for item in chunk:
            try:
                bgr, note = read_image_any(item.image_path)
            except PSSLError as e:
                if self.cfg['output']['on_bad_image'] == 'raise':
                    raise
                if not os.path.isfile(self.label_path(item)):
                    counts['skipped'] += 1
                    self._append(skipped_path, {'image': item.rel, 'reason': str(e)})
                    from paddleseg.utils import logger
                    logger.warning(f'skipped: {e}')
                continue
            if note:
                counts['converted'] += 1
            good.append((item, note))
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if not good:
            return
        seeds = [image_seed(self.cfg['seed'], item.rel) for item, _ in good]
        maps = self.explain(images, [item.class_id for item, _ in good], seeds)
        c = self.cfg['consensus']
        for k, ((item, note), image, image_maps) in enumerate(zip(good, images, maps)):
            names = sorted(image_maps)
            weights = None if c['weights'] is None else [c['weights'].get(n.split('/')[-1], 1.0)
                                                          for n in names]
            consensus, mask, confidence = cons.make_pseudo_label(
                [image_maps[n] for n in names], weights, c['renormalize'], c['threshold'], c['value'])
            path = self.label_path(item)
            if os.path.isfile(path):
                continue
            if c['postprocess'] == 'pmm':
                mask, confidence = self._pmm(image, consensus, item.class_id)
            store.write_label(path, mask, confidence)
            counts['written'] += 1
            if self._on_maps is not None:
                self._on_maps(item, image_maps, mask)
            self._append(stats_path, {
                'image': item.rel, 'class_id': item.class_id, 'height': int(mask.shape[0]),
                'width': int(mask.shape[1]), 'foreground': round(float(mask.mean()), 4),
                'confidence': round(float(confidence.mean()), 4), 'converted': note,
                'map_means': {n: round(float(image_maps[n].mean()), 4) for n in names}})
            if writer is not None and (start + k) % self.cfg['output']['vdl_every'] == 0:
                step = start + k
                writer.add_image('PSSL/image', image, step)
                for n in names:
                    writer.add_image(f'PSSL/{n}', _colour(image_maps[n]), step)
                writer.add_image('PSSL/consensus', _colour(consensus), step)
                writer.add_image('PSSL/mask', (np.repeat(mask[..., None], 3, -1) * 255).astype(np.uint8), step)

    def _pmm(self, image, consensus, class_id):
        """PMM on the consensus as the image's one CAM -> (mask, confidence)."""
        c, p = self.cfg['consensus'], self.cfg['consensus']['pmm']
        cam = consensus_as_cam(consensus, p['normalize'], c['threshold'], c['value'])
        label, confidence = pmm_ops.generate_pseudo_mask(
            image, cam[None], [class_id], background_id=store.BACKGROUND, t=p['t'], a=p['a'],
            smooth=p['smooth'], crf_params=self._crf_params, return_confidence=True)
        return (label == class_id).astype(np.uint8), confidence

    @staticmethod
    def _append(path, record):
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')

    def _vdl_writer(self, tag):
        from visualdl import LogWriter
        return LogWriter(logdir=os.path.join(self.root, 'vdl', tag))

    def finalize(self):
        """Write train.txt (every label that exists, in source order), the
        synsets and the manifest. Safe to run from any shard at any time."""
        done = [it for it in self.items if os.path.isfile(self.label_path(it))]
        atomic_write_text(os.path.join(self.root, store.FILE_LIST),
                          ''.join(f'{store.label_relpath(it.rel)}\n' for it in done))
        store.write_synsets(os.path.join(self.root, store.SYNSETS), self.class_names)
        skipped = []
        stats_dir = os.path.join(self.root, 'stats')
        for name in sorted(os.listdir(stats_dir)) if os.path.isdir(stats_dir) else []:
            if name.endswith('.skipped.jsonl'):
                skipped += _read_jsonl(os.path.join(stats_dir, name))
        manifest = {
            'config': self.cfg, 'config_path': self.config_path,
            'versions': _versions(), 'images_in_source': len(self.items),
            'labels': len(done), 'skipped': skipped,
            'per_image_statistics': 'stats/shard-*-of-*.jsonl',
            'explainers_not_applicable': getattr(self, 'dropped', {}),
            'format': 'paddle_pssl.pseudo_labels.store',
        }
        atomic_write_text(os.path.join(self.root, store.MANIFEST), json.dumps(manifest, indent=1))
        return manifest


def _read_jsonl(path):
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass   # a run killed mid-line
    return records


def _versions():
    versions = {'python': platform.python_version()}
    for module in ('paddle', 'paddleseg', 'interpretdl', 'numpy', 'cv2', 'skimage', 'sklearn'):
        try:
            versions[module] = __import__(module).__version__
        except Exception:   # noqa: BLE001  (a version is informative only)
            versions[module] = None
    from .. import __version__
    versions['paddle_pssl'] = __version__
    return versions
