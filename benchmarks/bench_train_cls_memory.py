"""Resident memory of tools/train_cls.py on 1k and on 20k generated images,
measured in one run: the classifier's data are read from disk per batch, so
the peak should not grow with the number of images (goal: 20k within 10 %
of 1k).

The images are unique smooth colour fields with pixel noise, 10 classes,
sides of 160-320 px, 90 % JPEG (quality 90) and 10 % PNG, written to a
temporary folder that is deleted at the end (--keep keeps it). Each count
trains --iters iterations in its own process, then train_cls evaluates the
val split and the whole train split, as it always does. Reported per run:

- peak RSS of the train_cls process (its VmHWM, read by the process itself
  at exit from an atexit hook the benchmark installs);
- peak memory of train_cls with its reader processes, sampled from /proc
  every 0.1 s: the RSS of train_cls plus the private pages of the readers
  (what they add; the pages they share with train_cls since the fork are in
  its RSS already);
- the seconds to list and check the images, and seconds per iteration
  (the loop's seconds / iterations, reader start-up included).

``--old REV`` runs the same counts with the train_cls of git revision REV
(extracted with ``git archive`` into the temporary folder) for comparison;
``3860a45`` is the last one that held the set in memory.

    python benchmarks/bench_train_cls_memory.py [--counts 1000 20000] [--num_workers 2] [--old 3860a45]

Times are of 2 CPU cores that other work may share; the memory figures do
not depend on that, the times do.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = 10

# train_cls with an exit hook that prints the process's own peak RSS
CHILD = r'''
import atexit, os, runpy, sys
def _peak():
    with open('/proc/self/status') as f:
        kib = [int(l.split()[1]) for l in f if l.startswith('VmHWM')][0]
    sys.stderr.write(f'BENCH_VMHWM_KIB {kib}\n')
atexit.register(_peak)
tool = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(tool, run_name='__main__')
'''


def make_images(root, count, seed=0):
    """``count`` unique pictures in CLASSES class folders; -> mean file bytes."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(count):
        folder = os.path.join(root, 'train', f'class_{i % CLASSES:02d}')
        os.makedirs(folder, exist_ok=True)
        w = int(rng.integers(160, 321))
        h = int(rng.integers(120, w + 1))
        low = rng.integers(0, 256, (6, 8, 3)).astype(np.float32)
        image = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        image += rng.normal(0, 6, image.shape).astype(np.float32)
        image = np.clip(image, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f'{i:06d}.' + ('png' if i % 10 == 9 else 'jpg'))
        cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        total += os.path.getsize(path)
    return total / count


def _children_of():
    found = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            found.setdefault(ppid, []).append(int(entry))
    return found


def _rollup_kib(pid, fields):
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            return sum(int(line.split()[1]) for line in f if line.split(':')[0] in fields)
    except (OSError, ValueError):
        return 0   # gone


def tree_kib(pid):
    """RSS of ``pid`` plus the private pages of all its descendants, KiB."""
    children, total, todo = _children_of(), _rollup_kib(pid, ('Rss',)), list()
    todo.extend(children.get(pid, []))
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        total += _rollup_kib(p, ('Private_Clean', 'Private_Dirty'))
    return total


def run_train_cls(code_root, image_root, save_dir, args, new):
    opts = [f'train_dataset.image_root={image_root}', f'model.name={args.model}',
            f'model.input_size={args.input_size}', 'model.output_stride=32',
            'train_dataset.val_fraction=0.05']
    argv = [sys.executable, '-c', CHILD, os.path.join(code_root, 'tools', 'train_cls.py'),
            '-c', os.path.join(code_root, 'configs', 'classifiers', 'resnet18_vd_source.yml'),
            '--save_dir', save_dir, '--iters', str(args.iters), '--batch_size', '32',
            '--log_iters', str(args.iters)]
    if new:
        argv += ['--num_workers', str(args.num_workers)]
    argv += ['--opts', *opts]
    log_path = save_dir + '.log'
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(argv, cwd=os.path.dirname(save_dir), stdout=log,
                                stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=code_root))
        peak = [0]

        def sample():
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_kib(proc.pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.time()
        proc.wait()
        sampler.join()
    with open(log_path) as f:
        text = f.read()
    if proc.returncode != 0:
        sys.exit(f'error: train_cls failed ({log_path}):\n{text[-3000:]}')
    with open(os.path.join(save_dir, 'train_cls.json')) as f:
        report = json.load(f)
    vmhwm = [int(line.split()[1]) for line in text.splitlines() if line.startswith('BENCH_VMHWM_KIB')]
    return {'peak_rss_mib': vmhwm[-1] / 1024, 'peak_tree_mib': peak[0] / 1024,
            'load_seconds': report['load_seconds'],
            'seconds_per_iter': report['seconds'] / report['iters'],
            'wall_seconds': time.time() - started, 'num_train': report['num_train']}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--counts', type=int, nargs=2, default=[1000, 20000])
    p.add_argument('--iters', type=int, default=30)
    p.add_argument('--num_workers', type=int, default=2)
    p.add_argument('--model', default='MobileNetV1_x0_25')
    p.add_argument('--input_size', type=int, default=64)
    p.add_argument('--old', default=None, help='git revision whose train_cls to compare with')
    p.add_argument('--work', default=None, help='folder for images and runs (default: a temporary one)')
    p.add_argument('--keep', action='store_true', help='keep the images and runs')
    p.add_argument('--json', default=None, help='write the figures here too')
    args = p.parse_args()

    work = args.work or tempfile.mkdtemp(prefix='bench_train_cls_memory_')
    os.makedirs(work, exist_ok=True)
    codes = [('streamed', REPO, True)]
    try:
        if args.old:
            old_root = os.path.join(work, 'old_code')
            os.makedirs(old_root, exist_ok=True)
            archive = subprocess.run(['git', '-C', REPO, 'archive', args.old], check=True,
                                     capture_output=True).stdout
            subprocess.run(['tar', '-x', '-C', old_root], input=archive, check=True)
            codes.append((f'in memory ({args.old})', old_root, False))
        sizes = {}
        for count in args.counts:
            t = time.time()
            sizes[count] = make_images(os.path.join(work, f'images_{count}'), count, seed=count)
            print(f'{count} images written in {time.time() - t:.0f} s, '
                  f'mean file {sizes[count] / 1024:.1f} KiB', flush=True)
        rows = []
        for name, code_root, new in codes:
            for count in args.counts:
                row = run_train_cls(code_root, os.path.join(work, f'images_{count}'),
                                    os.path.join(work, 'runs', f'{len(rows)}_{count}'), args, new)
                row.update(code=name, count=count)
                rows.append(row)
                print(f"{name:24s} {count:6d} images: peak RSS {row['peak_rss_mib']:7.0f} MiB, "
                      f"peak with readers {row['peak_tree_mib']:7.0f} MiB, list+check "
                      f"{row['load_seconds']:6.1f} s, {row['seconds_per_iter']:.3f} s/iter",
                      flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    small, large = args.counts
    print(f'\n{args.model} at {args.input_size} px, batch 32, {args.iters} iterations; '
          f'streamed with {args.num_workers} reader processes')
    for name, _, _ in codes:
        by = {r['count']: r for r in rows if r['code'] == name}
        print(f"{name}: peak RSS {large} / {small} images = "
              f"{by[large]['peak_rss_mib'] / by[small]['peak_rss_mib']:.3f}, peak with readers "
              f"{by[large]['peak_tree_mib'] / by[small]['peak_tree_mib']:.3f}")
    print('goal: streamed <= 1.10')
    if args.old:
        for count in args.counts:
            new, old = (r for r in rows if r['count'] == count)
            print(f"{count} images: s/iter streamed / in memory = "
                  f"{new['seconds_per_iter'] / old['seconds_per_iter']:.2f}, list+check / load = "
                  f"{new['load_seconds'] / max(old['load_seconds'], 1e-9):.2f}")
    print('times are on 2 CPU cores that other work may share: memory figures are robust to '
          'that, times are not')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'args': vars(args), 'mean_file_bytes': sizes, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
