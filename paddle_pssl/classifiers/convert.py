"""PaddleClas ResNet_vd weights -> PaddleSeg ResNet_vd backbone.

The two implementations register the same layers in the same order under
different names (``stem.0.conv.weight`` vs ``conv1_1._conv.weight``), so the
mapping is positional, checked shape by shape; the test checks that both give
identical feature maps. The classifier's head (``fc.*``) is dropped.

Command line (also ``python -m paddle_pssl convert_cls`` and
``tools/convert_cls_to_seg.py``)::

    python -m paddle_pssl.classifiers.convert --weights output/cls/model.pdparams \\
        --backbone ResNet18_vd --out output/cls/resnet18_vd_backbone.pdparams

then ``model.backbone.pretrained: output/cls/resnet18_vd_backbone.pdparams``.
"""
import os

from ..utils.errors import PSSLError
from ..utils.io import atomic_paddle_save
from ..utils.safe_load import safe_load

__all__ = ['classifier_to_backbone_state', 'save_backbone_from_classifier', 'conversion_hint',
           'convert_main']

HEAD_PREFIXES = ('fc.',)


def classifier_to_backbone_state(classifier_state, backbone, drop_prefixes=HEAD_PREFIXES):
    """-> a state dict with ``backbone``'s names and the classifier's values."""
    source = [(k, v) for k, v in classifier_state.items() if not k.startswith(tuple(drop_prefixes))]
    target = list(backbone.state_dict().items())
    if len(source) != len(target):
        raise PSSLError(f'classifier has {len(source)} backbone tensors, '
                        f'{type(backbone).__name__} has {len(target)}: not the same architecture')
    out = {}
    for (src_name, value), (dst_name, ref) in zip(source, target):
        if list(value.shape) != list(ref.shape):
            raise PSSLError(f'{src_name} {list(value.shape)} does not fit {dst_name} {list(ref.shape)}')
        out[dst_name] = value
    return out


def save_backbone_from_classifier(classifier_weights, backbone, path):
    """Convert a classifier ``.pdparams`` and save it for ``backbone.pretrained``."""
    state = safe_load(classifier_weights)
    if not isinstance(state, dict) or not state:
        raise PSSLError(f'{classifier_weights}: holds no parameters (not a state dict)')
    try:
        state = classifier_to_backbone_state(state, backbone)
    except PSSLError as e:
        raise PSSLError(f'{classifier_weights}: {e}') from None
    atomic_paddle_save(state, path)
    return path


def backbone_name(backbone):
    """The registered PaddleSeg name of a built backbone, where it can be told."""
    layers = getattr(backbone, 'layers', None)
    if type(backbone).__name__ == 'ResNet_vd' and isinstance(layers, int):
        return f'ResNet{layers}_vd'
    return None


def conversion_hint(path, file_state, model):
    """For a classifier's weights (a ``fc.*`` head) given to a backbone the
    converter handles: '; ...' with the one command that converts them."""
    name = backbone_name(model)
    if name is None or not any(k.startswith(HEAD_PREFIXES) for k in file_state):
        return ''
    out = os.path.splitext(path)[0] + '_backbone.pdparams'
    return (f"; these look like a classifier's weights, convert them with: python -m "
            f'paddle_pssl.classifiers.convert --weights {path} --backbone {name} --out {out}')


def _build_backbone(name):
    from paddleseg.cvlibs import manager
    from paddleseg.models import backbones as seg_backbones
    from ..config.loader import suggest
    # registered ones, and those PaddleSeg exports unregistered (ResNet34_vd)
    backbones = dict(manager.BACKBONES.components_dict)
    backbones.update({n: v for n, v in vars(seg_backbones).items()
                      if callable(v) and n[:1].isupper() and n not in backbones and
                      not isinstance(v, type)})
    if name not in backbones:
        raise PSSLError(f'--backbone {name!r} is not a PaddleSeg backbone'
                        f'{suggest(name, backbones)}')
    return backbones[name]()


def convert_main(argv=None):
    from ..utils.cli import ArgumentParser
    p = ArgumentParser("Convert a classifier's weights (tools/train_cls.py's model.pdparams, or "
                       "PaddleClas ResNet_vd) into a PaddleSeg backbone's, for "
                       "model.backbone.pretrained.")
    p.add_argument('--weights', required=True, help="the classifier's .pdparams")
    p.add_argument('--backbone', required=True,
                   help='the PaddleSeg backbone of the segmentation config, e.g. ResNet18_vd')
    p.add_argument('--out', default=None,
                   help='where to write the backbone weights (default: <weights>_backbone.pdparams)')
    args = p.parse_args(argv)
    if not os.path.isfile(args.weights):
        raise PSSLError(f'{args.weights}: --weights file not found')
    out = args.out or os.path.splitext(args.weights)[0] + '_backbone.pdparams'
    if os.path.isdir(out):
        raise PSSLError(f'{out}: --out is a folder; give a file name ending in .pdparams')
    import paddle_pssl  # noqa: F401  (registers the project's components, zlib before paddle)
    backbone = _build_backbone(args.backbone)
    try:
        save_backbone_from_classifier(args.weights, backbone, out)
    except OSError as e:
        raise PSSLError(f'{out}: cannot write ({e.strerror or e})')
    print(f'wrote {out}: {len(backbone.state_dict())} parameters of {args.backbone}; set '
          f'model.backbone.pretrained: {out}')
    return out


if __name__ == '__main__':
    from ..utils.cli import run
    run(convert_main)
