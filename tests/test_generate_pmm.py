"""The label generator with PMM post-processing (consensus.postprocess: pmm):
config keys, a valid store equal to CoV + PPMG on the consensus, and the
one-line hint when pydensecrf is missing."""
import importlib.util
import json
import os
import sys

import cv2
import numpy as np
import pytest
from paddleseg import transforms as T
from paddleseg.datasets import PSSLDataset

from paddle_pssl.pseudo_labels import consensus as cons
from paddle_pssl.pseudo_labels import pmm, store
from paddle_pssl.config import validate
from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator, consensus_as_cam
from paddle_pssl.utils import PSSLError

from conftest import write_photo_source

HAS_CRF = importlib.util.find_spec('pydensecrf') is not None
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """4 small real photos in 2 ImageNet class folders."""
    import skimage.data as data
    root = tmp_path_factory.mktemp('pmm_src')
    return write_photo_source(root, [
        (cid, k, cv2.resize(photo[k * 20:, k * 30:], (64 + 8 * k, 56), interpolation=cv2.INTER_AREA))
        for photo, cid in ((data.chelsea(), 281), (data.coffee(), 967)) for k in range(2)])


def _cfg(source, out, **pmm_cfg):
    return {'seed': 0, 'source': dict(source), 'classifiers': [{'name': 'efficientnet_lite0'}],
            'explainers': {'cam': {}},
            'consensus': {'postprocess': 'pmm', 'pmm': pmm_cfg},
            'output': {'pssl_root': str(out), 'batch_size': 4}}


def test_consensus_as_cam_by_hand():
    c = np.array([[0.2, 0.4], [0.6, 1.0]], np.float32)       # mean 0.55, min 0.2, max 1
    np.testing.assert_allclose(consensus_as_cam(c, 'max'), c)
    np.testing.assert_allclose(consensus_as_cam(c, 'minmax'), [[0, 0.25], [0.5, 1]], atol=1e-6)
    np.testing.assert_allclose(consensus_as_cam(c, 'threshold', 'mean', 1.0),
                               [[0, 0], [0.05 / 0.45, 1]], atol=1e-6)
    np.testing.assert_allclose(consensus_as_cam(c, 'threshold', 'fixed', 0.5),
                               [[0, 0], [0.2, 1]], atol=1e-6)
    assert not consensus_as_cam(np.full((2, 2), 0.3), 'threshold').any()   # flat: no evidence


def test_pmm_config_keys_merge_and_are_checked(source, tmp_path):
    cfg = validate('generator', _cfg(source, tmp_path, t=0.1, crf={'iterations': 3}))
    p = cfg['consensus']['pmm']
    assert cfg['consensus']['postprocess'] == 'pmm'
    assert p['t'] == 0.1 and p['a'] == 0.3 and p['smooth'] is True      # partial dict keeps defaults
    assert p['normalize'] == 'threshold'
    assert p['crf']['iterations'] == 3 and p['crf']['bilateral_sxy'] == 80.0
    assert validate('generator', {'source': dict(source)})['consensus']['postprocess'] == 'none'
    with pytest.raises(PSSLError, match="unknown key 'consensus.pmm.crf.sxy'"):
        validate('generator', _cfg(source, tmp_path, crf={'sxy': 3}))
    with pytest.raises(PSSLError, match="unknown key 'consensus.pmm.beta'"):
        validate('generator', _cfg(source, tmp_path, beta=0.5))
    with pytest.raises(PSSLError, match="consensus.pmm.normalize 'peak'"):
        validate('generator', _cfg(source, tmp_path, normalize='peak'))
    bad = _cfg(source, tmp_path)
    bad['consensus']['postprocess'] = 'crf'
    with pytest.raises(PSSLError, match="consensus.postprocess 'crf'"):
        validate('generator', bad)


@pytest.mark.skipif(not HAS_CRF, reason='pydensecrf2 not installed')
def test_pmm_postprocess_writes_a_valid_store_equal_to_cov_ppmg(source, tmp_path):
    out = tmp_path / 'pmm'
    seen = {}

    def keep(item, image_maps, mask):
        seen[item.rel] = (item, {k: v.copy() for k, v in image_maps.items()}, mask.copy())

    gen = PseudoLabelGenerator(_cfg(source, out, crf={'bilateral_sxy': 20.0}))
    counts = gen.run(progress=False, on_maps=keep)
    assert counts['written'] == 4
    params = pmm.DenseCRFParams(bilateral_sxy=20.0)
    for rel, (item, image_maps, mask) in seen.items():
        stored, confidence = store.read_label(os.path.join(out, store.label_relpath(rel)))
        np.testing.assert_array_equal(stored, mask)
        assert confidence is not None and 0 <= confidence.min() and confidence.max() <= 1
        # by hand: consensus of the maps, above its mean cut scaled to [0, 1], CoV + CRF + PPMG
        consensus = cons.consensus_map([image_maps[k] for k in sorted(image_maps)])
        cut = consensus.mean()
        cam = np.clip((consensus - cut) / (consensus.max() - cut), 0, 1)
        image = cv2.cvtColor(cv2.imread(item.image_path), cv2.COLOR_BGR2RGB)
        label, conf = pmm.generate_pseudo_mask(image, cam[None],
                                               [item.class_id], crf_params=params,
                                               return_confidence=True)
        np.testing.assert_array_equal(stored, (label == item.class_id).astype(np.uint8))
        np.testing.assert_allclose(confidence, conf, atol=1e-3)     # stored as float16
    upstream = PSSLDataset([T.Normalize()], source['image_root'], str(out))
    assert len(upstream) == 4 and set(np.unique(upstream[0]['label'])) <= {281, 967, 1000}
    manifest = json.load(open(out / store.MANIFEST))
    assert manifest['config']['consensus']['postprocess'] == 'pmm'
    assert manifest['config']['consensus']['pmm']['crf']['bilateral_sxy'] == 20.0


def test_missing_pydensecrf_gives_the_one_line_hint(source, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'pydensecrf', None)     # import now raises ImportError
    monkeypatch.setitem(sys.modules, 'pydensecrf.densecrf', None)
    with pytest.raises(PSSLError, match=r'pip install pydensecrf2'):
        PseudoLabelGenerator(_cfg(source, tmp_path / 'x'))
    # through the CLI: one line on stderr, exit code 2, before any model is loaded
    import yaml

    from paddle_pssl.tools_impl import generate_main
    from paddle_pssl.utils.cli import run
    cfg_path = tmp_path / 'pmm.yml'
    cfg_path.write_text(yaml.safe_dump(_cfg(source, tmp_path / 'x')))
    with pytest.raises(SystemExit) as exit_info:
        run(generate_main, ['-c', str(cfg_path), '--no_progress'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('error: ') and 'pip install pydensecrf2' in err
    # without the post-processing nothing needs the CRF
    PseudoLabelGenerator(dict(_cfg(source, tmp_path / 'y'), consensus={'postprocess': 'none'}))


def test_pmm_configs_parse():
    from paddle_pssl.config import load_config, load_yaml
    cfg = load_yaml(os.path.join(REPO, 'configs', 'pmm', 'pseudo_labels_pmm.yml'))
    assert validate('generator', cfg)['consensus']['postprocess'] == 'pmm'
    puf = load_config(os.path.join(REPO, 'configs', 'pmm', 'pretrain_pssl_puf.yml'))
    loss = puf.dic['loss']['types'][0]
    assert loss['type'] == 'PUFCrossEntropyLoss' and loss['background_weight'] == 0.1
    # the benchmark's compact space: the builder takes num_classes from the store
    assert puf.dic['train_dataset']['label_space'] == 'compact' and 'num_classes' not in puf.dic['model']
    cycle = load_config(os.path.join(REPO, 'configs', 'pmm', 'pretrain_pssl_cycle.yml'))
    assert cycle.dic['train_dataset']['type'] == 'WeightedPSSLDataset'
    assert cycle.dic['loss']['types'][0]['type'] == 'PSSLCrossEntropyLoss'
    bench = load_yaml(os.path.join(REPO, 'configs', 'benchmark', 'pmm.yml'))
    assert bench['extensions'] == ['pmm']
