"""PaddleClas ResNet_vd weights -> PaddleSeg ResNet_vd backbone.

The two implementations register the same layers in the same order under
different names (``stem.0.conv.weight`` vs ``conv1_1._conv.weight``), so the
mapping is positional, checked shape by shape; the test checks that both give
identical feature maps. The classifier's head (``fc.*``) is dropped.
"""
from ..utils.errors import PSSLError
from ..utils.io import atomic_paddle_save
from ..utils.safe_load import safe_load


def classifier_to_backbone_state(classifier_state, backbone, drop_prefixes=('fc.',)):
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
    state = classifier_to_backbone_state(safe_load(classifier_weights), backbone)
    atomic_paddle_save(state, path)
    return path
