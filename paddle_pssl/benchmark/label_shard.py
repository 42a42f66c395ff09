"""One shard of the benchmark's label generation, in its own process: writes
the shard's labels through the generator and scores, against the exact
masks, every explainer alone, every classifier alone and the consensus, from
the same maps, plus other consensus rules on all maps (other thresholds, the
ensemble without LIME) so the default rule can be judged. Counts go to a JSON file (they add up over shards), a few
example maps to an .npz.

    python -m paddle_pssl.benchmark.label_shard CONFIG.yml GT_ROOT i/N OUT.json [EXAMPLES]
"""
import json
import sys

import numpy as np

from ..pseudo_labels import consensus as cons
from ..pseudo_labels.evaluate import IoUCounter, gt_path, read_gt_mask
from ..pseudo_labels.generate import PseudoLabelGenerator
from ..utils.io import atomic_write, atomic_write_text


def groups_of(keys):
    """Named subsets of the '<classifier>/<explainer>' map keys."""
    groups = {k: [k] for k in keys}
    for c in sorted({k.split('/')[0] for k in keys}):
        groups[f'classifier {c}'] = [k for k in keys if k.startswith(c + '/')]
    for e in sorted({k.split('/')[1] for k in keys}):
        groups[f'explainer {e}'] = [k for k in keys if k.endswith('/' + e)]
    return groups


# Other consensus rules scored from the same maps: (threshold, value).
RULES = {'ensemble consensus, otsu': ('otsu', 0.0),
         'ensemble consensus, mean x1.25': ('mean', 1.25),
         'ensemble consensus, mean x1.5': ('mean', 1.5)}


def label_and_score(cfg, gt_root, shard, examples=0):
    gen = PseudoLabelGenerator(cfg, '<benchmark>')
    c = gen.cfg['consensus']
    counters, saved = {}, {}

    def score(item, image_maps, mask):
        gt = read_gt_mask(gt_path(gt_root, item.rel), mask.shape)
        groups = groups_of(sorted(image_maps))
        for name, keys in groups.items():
            _, sub_mask, _ = cons.make_pseudo_label([image_maps[k] for k in keys], None, c['renormalize'],
                                                    c['threshold'], c['value'])
            counters.setdefault(name, IoUCounter()).add(sub_mask, gt, item.class_id)
        counters.setdefault('ensemble consensus', IoUCounter()).add(mask, gt, item.class_id)
        keys = sorted(image_maps)
        consensus = cons.consensus_map([image_maps[k] for k in keys], None, c['renormalize'])
        for name, (method, value) in RULES.items():
            counters.setdefault(name, IoUCounter()).add(cons.pseudo_mask(consensus, method, value), gt,
                                                        item.class_id)
        no_lime = [k for k in keys if not k.endswith('/lime')]
        if 0 < len(no_lime) < len(keys):
            _, sub_mask, _ = cons.make_pseudo_label([image_maps[k] for k in no_lime], None, c['renormalize'],
                                                    c['threshold'], c['value'])
            counters.setdefault('ensemble consensus without lime', IoUCounter()).add(sub_mask, gt, item.class_id)
        if len(saved) // 4 < examples and item.rel.endswith('_0.png'):
            n = len(saved) // 4
            expl = sorted(k for k in groups if k.startswith('explainer '))
            saved[f'{n}_maps'] = np.stack([np.mean([image_maps[k] for k in groups[e]], 0) for e in expl])
            saved[f'{n}_mask'], saved[f'{n}_gt'] = mask, gt
            saved[f'{n}_rel'] = np.array(item.rel)

    counts = gen.run(shard=shard, progress=False, on_maps=score)
    return gen, counts, counters, saved


def main(argv):
    import yaml
    cfg_path, gt_root, shard, out_json = argv[:4]
    examples = int(argv[4]) if len(argv) > 4 else 0
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f)
    index, count = (int(v) for v in shard.split('/'))
    gen, counts, counters, saved = label_and_score(cfg, gt_root, (index, count), examples)
    atomic_write_text(out_json, json.dumps({
        'counts': counts,
        'dropped': getattr(gen, 'dropped', {}),
        'groups': {k: ctr.to_dict() for k, ctr in counters.items()}}))
    if saved:
        atomic_write(out_json[:-5] + '.examples.npz', lambda tmp: np.savez_compressed(tmp, **saved), '.npz')


if __name__ == '__main__':
    main(sys.argv[1:])
