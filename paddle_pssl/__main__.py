"""``python -m paddle_pssl <tool> [flags]``: the CLIs of ``tools/*.py`` from the
installed package (the benchmark runs its jobs this way, so it does not need
a checkout).

    python -m paddle_pssl train -c configs/pretrain/pspnet_resnet50_vd_pssl.yml --use_vdl
    python -m paddle_pssl generate -c configs/pseudo_labels/imagenet_efficientnet_lite.yml
"""
import importlib
import sys

from .utils.cli import run

# tool name -> (module, function); each function parses its own flags.
TOOLS = {
    'train': ('paddle_pssl.tools_impl', 'train_main'),
    'val': ('paddle_pssl.tools_impl', 'val_main'),
    'predict': ('paddle_pssl.tools_impl', 'predict_main'),
    'export': ('paddle_pssl.tools_impl', 'export_main'),
    'generate': ('paddle_pssl.tools_impl', 'generate_main'),
    'eval_labels': ('paddle_pssl.tools_impl', 'eval_labels_main'),
    'train_cls': ('paddle_pssl.classification.train', 'train_cls_main'),
    'relabel': ('paddle_pssl.pseudo_labels.relabel', 'relabel_main'),
    'infer': ('paddle_pssl.deploy.infer', 'infer_main'),
    'benchmark': ('paddle_pssl.benchmark.cli', 'benchmark_main'),
    'compare': ('paddle_pssl.benchmark.compare', 'compare_main'),
    'inspect': ('paddle_pssl.pseudo_labels.inspect', 'inspect_main'),
    'convert_cls': ('paddle_pssl.classifiers.convert', 'convert_main'),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in TOOLS:
        print(f"usage: python -m paddle_pssl {{{','.join(TOOLS)}}} [flags]", file=sys.stderr)
        sys.exit(2)
    module, function = TOOLS[argv[0]]
    sys.argv = [f'paddle_pssl {argv[0]}', *argv[1:]]   # argparse names the tool in its usage
    run(getattr(importlib.import_module(module), function), argv[1:])


if __name__ == '__main__':
    main()
