"""Features and logits from one forward pass (the shape of pytorch-grad-cam's
activations-and-gradients helper): a forward post-hook on the feature layer
for the duration of one call.

Two uses, one function:

* training losses on the CAM (``leaf=False``): the feature map stays in the
  model's graph, so gradients reach the backbone;
* explainers (``leaf=True``): the feature map is replaced, inside the forward,
  by a detached copy that requires grad. The head's graph then starts there
  and ``paddle.grad(score, features)`` works with the backbone run without a
  graph (Paddle >= 2.4 keeps no ``.grad`` on intermediate tensors).
"""
import numpy as np

import paddle

__all__ = ["features_and_logits"]


def features_and_logits(model, feature_layer, x, leaf=False):
    """(feature map [N, C, h, w], logits [N, K]) of ``model(x)``.

    feature_layer: the sublayer (or its name in ``model.named_sublayers()``)
    whose output is the feature map. With ``leaf=True`` it must run exactly
    once per forward; otherwise its last output is returned.
    """
    if isinstance(feature_layer, str):
        feature_layer = dict(model.named_sublayers())[feature_layer]
    if not isinstance(x, paddle.Tensor):
        x = paddle.to_tensor(np.asarray(x, dtype=np.float32))
    captured = []

    def hook(layer, inputs, output):
        if not leaf:
            captured.append(output)
            return None  # keep the output
        copy = output.detach()
        copy.stop_gradient = False
        captured.append(copy)
        return copy

    handle = feature_layer.register_forward_post_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if not captured or (leaf and len(captured) != 1):
        raise RuntimeError(f"the feature layer ran {len(captured)} times in one forward; "
                           f"choose a layer that runs exactly once")
    return captured[-1], logits
