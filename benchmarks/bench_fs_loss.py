"""Peak memory and time of HFPL's feature-similarity loss: windowed vs full pairwise.

    timeout 900 /work/venv/bin/python benchmarks/bench_fs_loss.py [--sizes 56 112] [--big 448]

Method: every case (form, CAM size) runs in a fresh subprocess so that no
allocator cache or high-water mark carries over. In the child:
  * inputs: one image [1, 3, S, S] in [0, 1] (smooth colour regions) and CAM
    logits [1, 20, S, S] with 2 present classes (VOC-like); y =
    cam_to_class_map(...) has 21 channels;
  * a 16x16 warm-up call loads the kernels;
  * peak memory = paddle's host allocator peak ("Allocated", CPU place 0)
    after one forward + backward, minus what was allocated before it; the
    process's peak RSS growth (VmHWM reset through /proc/self/clear_refs) is
    printed beside it as a cross-check;
  * time = best of 3 forward + backward calls (1 for the slow full form
    above 64^2 and for the big size).
Ratios full / window come from the same run. Relative error of the window
against the full value is measured on the same inputs.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return -1


def child(form, size, radius, repeats):
    sys.path.insert(0, ROOT)
    import paddle_pssl._zlib_first  # noqa: F401  before paddle
    import numpy as np
    import paddle
    from paddle.base import core
    from paddle_pssl.losses import hfpl

    def inputs(s):
        rng = np.random.default_rng(0)
        rows, cols = np.mgrid[0:s, 0:s] / s
        image = np.stack([(rows > 0.5) * 0.8 + 0.1, (cols > 0.4) * 0.7,
                          0.5 + 0.3 * np.sin(6 * rows)])[None]
        image = image + rng.normal(0, 0.02, image.shape)
        z = rng.normal(0, 0.3, (1, 20, s, s))
        z[0, 3] += 4 * np.exp(-((rows - .3) ** 2 + (cols - .3) ** 2) / 0.02)
        z[0, 11] += 4 * np.exp(-((rows - .7) ** 2 + (cols - .6) ** 2) / 0.03)
        label = np.zeros((1, 20))
        label[0, [3, 11]] = 1
        return (paddle.to_tensor(image.astype('float32')),
                paddle.to_tensor(z.astype('float32'), stop_gradient=False),
                paddle.to_tensor(label.astype('float32')))

    def run(x, z, label):
        y = hfpl.cam_to_class_map(z, label)
        # 'window-autograd': an image that needs a gradient takes the autograd path
        x.stop_gradient = form != 'window-autograd'
        mode = 'full' if form == 'full' else 'window'
        loss = hfpl.feature_similarity_loss(x, y, radius=radius, mode=mode)
        loss.backward()
        value = float(loss)
        z.clear_gradient()
        return value

    run(*inputs(16))                                  # warm-up
    x, z, label = inputs(size)
    allocated_before = core.host_memory_stat_current_value('Allocated', 0)
    rss_before = _rss_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:     # reset VmHWM
        f.write('5')
    start = time.perf_counter()
    value = run(x, z, label)
    times = [time.perf_counter() - start]
    peak = core.host_memory_stat_peak_value('Allocated', 0) - allocated_before
    rss_peak = _rss_kib('VmHWM') - rss_before
    for _ in range(repeats - 1):
        start = time.perf_counter()
        run(x, z, label)
        times.append(time.perf_counter() - start)
    print(json.dumps({'peak_bytes': peak, 'rss_peak_kib': rss_peak,
                      'seconds': min(times), 'loss': value}))


def measure(form, size, radius, repeats=3):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', form,
           str(size), str(-1 if radius is None else radius), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {'error': (out.stderr.strip().splitlines() or ['?'])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def mib(n):
    return n / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[56, 112])
    parser.add_argument('--radii', type=int, nargs='+', default=[15, 10],
                        help='window half-sizes (15 = 3 sigma, the default; 10 = 2 sigma)')
    parser.add_argument('--big', type=int, default=448,
                        help='also run the window form at this size, 0 = skip')
    args = parser.parse_args()
    print(__doc__.split('Method:')[1].strip().split('Ratios')[0].rstrip())
    print('\nsigma 5, 21-channel y, batch 1. window rN: pairs with |di|, |dj| <= N; '
          "'autograd': the same window when the image also needs a gradient\n")
    print(f'{"size":>7} {"form":>18} {"peak MiB":>10} {"RSS MiB":>9} '
          f'{"time s":>8} {"loss":>11} {"vs full":>8}')

    def show(size, name, r, full=None):
        if 'error' in r:
            print(f'{size:>4}^2 {name:>18}  failed: {r["error"]}')
            return
        err = '' if not full or 'error' in full else \
            f'{(r["loss"] - full["loss"]) / abs(full["loss"]):+8.1%}'
        print(f'{size:>4}^2 {name:>18} {mib(r["peak_bytes"]):10.1f} '
              f'{r["rss_peak_kib"] / 1024:9.1f} {r["seconds"]:8.3f} '
              f'{r["loss"]:11.5g} {err:>8}')

    bytes_per_pair = None
    for size in args.sizes:
        full = measure('full', size, None, repeats=1 if size > 64 else 3)
        show(size, 'full', full)
        cases = [(f'window r{r}', 'window', r) for r in args.radii]
        cases.append((f'window r{args.radii[0]} autograd', 'window-autograd',
                      args.radii[0]))
        results = {}
        for name, form, r in cases:
            results[name] = measure(form, size, r)
            show(size, name, results[name], full)
        win = results[cases[0][0]]
        if 'error' not in full and 'error' not in win:
            print(f'{"":>7} full / window r{args.radii[0]}: memory '
                  f'x{full["peak_bytes"] / win["peak_bytes"]:.0f}, '
                  f'time x{full["seconds"] / win["seconds"]:.0f}')
            bytes_per_pair = full['peak_bytes'] / float(size * size) ** 2
    if args.big:
        for r in args.radii[:1]:
            show(args.big, f'window r{r}', measure('window', args.big, r, repeats=1))
    if bytes_per_pair:
        big = args.big or 448
        pairs = float(big) ** 4
        print(f'\nfull form at {big}^2 CAM resolution: {pairs:.3g} ordered pixel pairs; '
              f'at the {bytes_per_pair:.1f} bytes/pair measured at {args.sizes[-1]}^2 '
              f'it would need ~{pairs * bytes_per_pair / 2 ** 40:.1f} TiB per image (not run).')


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--child':
        form, size, radius, repeats = sys.argv[2:6]
        child(form, int(size), None if int(radius) < 0 else int(radius),
              int(repeats))
    else:
        main()
