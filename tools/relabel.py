"""Cyclic relabelling (PMM): predict the training set with a trained PSSL model
into a new label store, then pre-train a fresh model on it.

    python tools/relabel.py -c <pretrain config> --model_path <model.pdparams> \
        --image_root <images> --pssl_root <old store> --save_root <new store> \
        --flip_horizontal --scales 0.75 1.0 1.25

Resumable (finished labels are skipped) and shardable (--shard i/N)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402  (first: imports zlib before paddle)
from paddle_pssl.pseudo_labels.relabel import relabel_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(relabel_main)
