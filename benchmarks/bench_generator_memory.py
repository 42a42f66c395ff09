"""Peak memory of the label generator on one ordinary photo vs one huge photo,
each run in its own subprocess (peak RSS = its VmHWM), same config.

The huge photo is skimage's coffee scaled up to about ``--megapixels`` (a real
photo's content, saved as JPEG or PNG); the ordinary one is the same photo at
its own 600x400. Both are labelled at their own size (the huge one at the
generator's working resolution, HUGE_WORK_SIDE px a side, then written at full
size).

    python benchmarks/bench_generator_memory.py [--megapixels 100] [--format jpg|png] [--config default|minimal]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CHILD = r'''
import json, sys, time
import paddle_pssl
from paddle_pssl.pseudo_labels.generate import PseudoLabelGenerator
cfg = json.loads(sys.argv[1])
started = time.time()
counts = PseudoLabelGenerator(cfg).run(progress=False)
hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
print(json.dumps({'counts': counts, 'peak_rss_mib': hwm / 1024, 'seconds': time.time() - started}))
'''


def write_source(root, image, fmt):
    """One photo in class 967 (espresso) of 1000 placeholder wnids."""
    import cv2
    names = [f'n{i:08d}' for i in range(1000)]
    folder = os.path.join(root, 'train', names[967])
    os.makedirs(folder, exist_ok=True)
    cv2.imwrite(os.path.join(folder, f'photo.{fmt}'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    with open(os.path.join(root, 'synsets.txt'), 'w') as f:
        f.write(''.join(f'{n}\n' for n in names))
    return {'image_root': root, 'synsets': os.path.join(root, 'synsets.txt')}


def config(kind, source, out):
    if kind == 'minimal':
        cfg = {'classifiers': [{'name': 'efficientnet_lite0'}], 'explainers': {'cam': {}}}
    else:   # the shipped default: Lite0/1/2, CAM + SmoothGrad 4, leave-one-out mean, Otsu
        from paddle_pssl.config import load_yaml
        cfg = load_yaml(os.path.join(REPO, 'configs', 'pseudo_labels', 'imagenet_efficientnet_lite.yml'))
    cfg.update(seed=0, source=source, output={'pssl_root': out, 'batch_size': 1, 'vdl_every': 0})
    return cfg


def measure(cfg):
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, '-c', CHILD, json.dumps(cfg)], capture_output=True,
                            text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--megapixels', type=float, default=100)
    p.add_argument('--format', default='jpg', choices=['jpg', 'png'])
    p.add_argument('--config', default='default', choices=['default', 'minimal'])
    args = p.parse_args()
    import cv2
    import skimage.data
    from paddle_pssl.pseudo_labels.consensus import HUGE_WORK_SIDE, WORK_MAX_SIDE
    photo = skimage.data.coffee()
    scale = (args.megapixels * 1e6 / (photo.shape[0] * photo.shape[1])) ** 0.5
    huge = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)),
                      interpolation=cv2.INTER_CUBIC)
    work = tempfile.mkdtemp(prefix='bench_generator_memory_')
    rows = {}
    for name, image in (('ordinary', photo), ('huge', huge)):
        source = write_source(os.path.join(work, name), image, args.format)
        del image
        rows[name] = measure(config(args.config, source, os.path.join(work, name + '_labels')))
        rows[name]['size'] = f"{(huge if name == 'huge' else photo).shape[1]}x" \
                             f"{(huge if name == 'huge' else photo).shape[0]}"
        assert rows[name]['counts']['written'] == 1, rows[name]
    del huge
    print(f'config {args.config}, {args.format}; images above {WORK_MAX_SIDE} px a side are '
          f'labelled at {HUGE_WORK_SIDE} px a side')
    for name, row in rows.items():
        print(f"  {name:9s} {row['size']:>12s}  peak RSS {row['peak_rss_mib']:7.0f} MiB  "
              f"({row['seconds']:.1f} s)")
    extra = rows['huge']['peak_rss_mib'] - rows['ordinary']['peak_rss_mib']
    print(f'huge - ordinary = {extra:.0f} MiB = {extra / 1024:.2f} GiB  (goal <= 1.5 GiB)')


if __name__ == '__main__':
    main()
