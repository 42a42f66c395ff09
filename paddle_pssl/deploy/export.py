"""Export a trained model to a static graph for Paddle Inference, with the
``deploy.yaml`` that PaddleSeg's deployment tools read."""
import os

import paddle
import yaml

from ..utils.model_fit import load_trained
from ..utils.io import atomic_write_text
from .paddle_compat import program_file


class _WithOutputOp(paddle.nn.Layer):
    """The model's first output followed by argmax / softmax."""

    def __init__(self, model, output_op):
        super().__init__()
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        logit = self.model(x)[0]
        if self.output_op == 'argmax':
            return paddle.argmax(logit, axis=1, dtype='int32')
        if self.output_op == 'softmax':
            return paddle.nn.functional.softmax(logit, axis=1)
        return logit


def export_model(cfg, model_path, save_dir, input_shape=None, output_op='argmax'):
    """Write ``model.pdmodel`` (``model.json`` on Paddle 3), ``model.pdiparams``
    and ``deploy.yaml`` to save_dir."""
    from ..config.paddleseg import seg_builder
    builder = seg_builder(cfg)
    model = builder.model
    load_trained(model, model_path)   # every parameter: an export must not carry a random head
    model.eval()
    net = _WithOutputOp(model, output_op)
    net.eval()
    shape = list(input_shape) if input_shape else [-1, 3, -1, -1]
    # full_graph=True: Paddle 2.6 defaults to SOT here, which ignores input_spec
    # (and warns so); jit.save converts with the AST path anyway, so say it.
    static = paddle.jit.to_static(
        net, input_spec=[paddle.static.InputSpec(shape=shape, dtype='float32')],
        full_graph=True)
    os.makedirs(save_dir, exist_ok=True)
    prefix = os.path.join(save_dir, 'model')
    paddle.jit.save(static, prefix)
    val_cfg = cfg.val_dataset_cfg or cfg.train_dataset_cfg
    # an export: block (PaddleSeg's older configs) names the deployment transforms itself
    given = (cfg.dic.get('export') or {}).get('transforms')
    transforms = given if given is not None else [
        t for t in val_cfg.get('transforms', [{'type': 'Normalize'}])
        if t.get('type') in ('Normalize', 'Resize', 'ResizeByShort', 'ResizeByLong', 'Padding')]
    deploy = {'Deploy': {'model': os.path.basename(program_file(prefix)),
                         'params': 'model.pdiparams',
                         'transforms': transforms, 'input_shape': shape,
                         'output_op': output_op, 'output_dtype':
                         'int32' if output_op == 'argmax' else 'float32'}}
    atomic_write_text(os.path.join(save_dir, 'deploy.yaml'),
                      yaml.safe_dump(deploy, sort_keys=False))
    return save_dir
