"""Throughput of the batched explainer ensemble vs InterpretDL one image at a time.

Measured in one run, same classifier, same images, same settings:
  ours      ExplainerEnsemble(CAM + GradCAM + SmoothGrad + LIME) on the batch,
            sharing the clean forward, parameters frozen for gradients, LIME's
            superpixels in background threads; engine 'dygraph' and/or
            'inference' (LIME's forwards through Paddle Inference + oneDNN)
  baseline  InterpretDL 0.8.0's interpreters called per image (with this
            project's shims: GradCAMInterpreterFixed, LIMECVInterpreterFixed;
            InterpretDL has no CAM, so CAM runs ours per image)
Prints images/second, the ratio, the largest absolute difference between the
two sets of [0, 1] maps per explainer, and projected hours for 1.28 M images.
The whole label generator against its floor: benchmarks/bench_generator.py.

    timeout 3600 /work/venv/bin/python benchmarks/bench_explainers.py --num-images 4
"""
import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # InterpretDL's per-sample progress bars
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle_pssl._zlib_first  # noqa: E402,F401  before paddle
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import paddle  # noqa: E402

IMAGENET_IMAGES = 1_281_167


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--lime-samples", type=int, default=100)
    p.add_argument("--smoothgrad-samples", type=int, default=20)
    p.add_argument("--smoothgrad-batch", type=int, default=32, help="rows per forward/backward (ours)")
    p.add_argument("--lime-batch", type=int, default=50, help="rows per forward (both, InterpretDL's default)")
    p.add_argument("--engine", choices=["dygraph", "inference", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", default="ResNet18", help="a PaddleClas architecture with .blocks and .fc")
    return p.parse_args()


def photos(n, size):
    """Real photos from scikit-image: short side -> size * 256 / 224, centre crop, uint8 RGB."""
    from skimage import data
    from skimage.transform import resize

    loaders = [data.astronaut, data.chelsea, data.coffee, data.rocket, lambda: data.stereo_motorcycle()[0],
               data.hubble_deep_field, data.retina, data.immunohistochemistry]
    out = []
    for i in range(n):
        img = loaders[i % len(loaders)]()[..., :3]
        if i >= len(loaders):  # more images than photos: mirrored copies
            img = img[:, ::-1]
        short = round(size * 256 / 224)
        h, w = img.shape[:2]
        scale = short / min(h, w)
        img = resize(img, (max(size, round(h * scale)), max(size, round(w * scale))), anti_aliasing=True)
        top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        out.append((img[top:top + size, left:left + size] * 255).round().astype(np.uint8))
    return np.stack(out)


def build_model(arch):
    import paddleclas.ppcls.arch.backbone as backbones

    paddle.seed(0)
    model = getattr(backbones, arch)(class_num=1000)
    model.eval()
    names = [n for n, _ in model.named_sublayers()]
    last_block = max((n for n in names if n.count(".") == 1 and n.startswith("blocks.")),
                     key=lambda n: int(n.split(".")[1]))
    return model, last_block


def main():
    args = parse_args()
    from paddle_pssl.classifiers import IMAGENET_MEAN, IMAGENET_STD, Classifier
    from paddle_pssl.explainers import ExplainerEnsemble
    from paddle_pssl.explainers.interpretdl_shims import interpretdl_reference

    model, feature_layer = build_model(args.arch)
    classifier = Classifier(model, args.arch, feature_layer, input_size=args.image_size, fc_layer="fc")
    u8 = photos(args.num_images, args.image_size)
    images = ((u8.astype(np.float32) / 255 - np.asarray(IMAGENET_MEAN, np.float32))
              / np.asarray(IMAGENET_STD, np.float32)).transpose(0, 3, 1, 2).astype(np.float32)
    targets = [(97 * i + 13) % 1000 for i in range(args.num_images)]
    settings = {
        "cam": {},
        "gradcam": {},
        "smoothgrad": dict(n_samples=args.smoothgrad_samples, batch_size=args.smoothgrad_batch),
        "lime": dict(num_samples=args.lime_samples, batch_size=args.lime_batch),
    }
    engines = ["dygraph", "inference"] if args.engine == "both" else [args.engine]

    print(f"classifier : PaddleClas {args.arch}, RANDOM weights (no PaddleClas weights offline; timings only), "
          f"feature layer {feature_layer!r}")
    print(f"images     : {args.num_images} real photos from skimage.data, {args.image_size}x{args.image_size}")
    print(f"settings   : SmoothGrad n_samples={args.smoothgrad_samples} (noise 0.1, gradient of probability), "
          f"LIME num_samples={args.lime_samples} batch {args.lime_batch}, GradCAM gradient of logit")
    print(f"machine    : {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, paddle {paddle.__version__}, "
          f"device {paddle.get_device()}, load average {os.getloadavg()[0]:.2f} at start")

    # warm-up (kernels, the inference export): one image, not timed
    ensembles = {}
    for engine in engines:
        ens = ExplainerEnsemble(classifier, settings, engine=engine, seed=args.seed)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ens(images[:1], targets[:1])
        print(f"warm-up    : ours[{engine}] {time.perf_counter() - t0:.1f} s (one image; includes the one-off "
              f"export of the inference engine)" if engine == "inference" else
              f"warm-up    : ours[{engine}] {time.perf_counter() - t0:.1f} s (one image)")
        ensembles[engine] = ens

    ours = {}
    for engine, ens in ensembles.items():
        for name, explainer in ens.explainers.items():
            if hasattr(explainer, "reseed"):
                explainer.reseed(args.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            maps = ens(images, targets)
        ours[engine] = (maps, dict(ens.last_timings))

    # baseline: InterpretDL per image, same settings (the explainer objects carry them)
    reference_explainers = ensembles[engines[0]].explainers
    baseline_maps, baseline_times = {}, {}
    paddle.seed(0)
    for name in ("cam", "gradcam", "smoothgrad", "lime"):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            baseline_maps[name] = interpretdl_reference(reference_explainers[name], images, targets, seed=args.seed)
        baseline_times[name] = time.perf_counter() - t0
    baseline_total = sum(baseline_times.values())

    n = args.num_images
    print()
    print(f"{'seconds per image':<26}" + "".join(f"{c:>12}" for c in ["cam", "gradcam", "smoothgrad", "lime",
                                                                     "shared fwd", "total"]))
    print(f"{'InterpretDL, per image':<26}" + "".join(f"{baseline_times[k] / n:>12.3f}"
                                                     for k in ["cam", "gradcam", "smoothgrad", "lime"])
          + f"{'-':>12}{baseline_total / n:>12.3f}")
    for engine, (_, timing) in ours.items():
        print(f"{'ours[' + engine + '], batched':<26}" + "".join(
            f"{timing.get(k, 0.0) / n:>12.3f}" for k in ["cam", "gradcam", "smoothgrad", "lime", "shared_forward",
                                                        "total"]))
    print()
    base_ips = n / baseline_total
    print(f"InterpretDL one image at a time : {base_ips:8.4f} images/s -> "
          f"{IMAGENET_IMAGES / base_ips / 3600:10.1f} h for 1.28 M images (one process)")
    for engine, (maps, timing) in ours.items():
        ips = n / timing["total"]
        print(f"ours[{engine:9}] batched ensemble : {ips:8.4f} images/s -> "
              f"{IMAGENET_IMAGES / ips / 3600:10.1f} h for 1.28 M images; speed-up x{ips / base_ips:.2f}")
    print()
    print("largest |ours - InterpretDL| on the [0, 1] maps (same seeds):")
    for engine, (maps, _) in ours.items():
        diffs = "  ".join(f"{k} {np.abs(maps[k] - baseline_maps[k]).max():.2e}"
                          for k in ["cam", "gradcam", "smoothgrad", "lime"])
        print(f"  ours[{engine:9}] {diffs}")
    lime = ensembles[engines[0]].explainers["lime"]
    if lime.last_segments is not None:
        k = [int(s.max()) + 1 for s in lime.last_segments]
        print(f"  (LIME superpixels per image {k}; with fewer samples than superpixels the linear fit is "
              f"underdetermined and amplifies float differences)")
    print(f"load average {os.getloadavg()[0]:.2f} at end (other processes on the machine inflate both sides)")


if __name__ == "__main__":
    main()
