"""The output layer of a PSSL pre-training in a compact or objectness label
space, recorded so that fine-tuning never starts from it.

Fine-tuning loads ``model.pretrained`` by shape, as PaddleSeg does: upstream's
1001-output layer never fits a task and is skipped. A compact head has K + 1
outputs and an objectness head 2, which may equal the task's class count; its
classes (the classifier's) are still not the task's. So a pre-training run in
those spaces writes ``<save_dir>/label_space.json`` (the space, its classes and
the names of the parameters whose shape follows ``num_classes``), and loading
such a checkpoint as ``model.pretrained`` keeps the model's own random init
for those parameters, with one log line. To continue a pre-training, use
``--resume_model``, which loads everything.
"""
import copy
import json
import os

from ..utils.io import atomic_write_text

RECORD = 'label_space.json'


def output_layer_names(builder, model):
    """Names of ``model``'s parameters whose shape follows ``num_classes``:
    the same model config built with one output more, compared by shape
    (its ``pretrained`` keys removed, so nothing is loaded)."""
    model_cfg = copy.deepcopy(builder.config.dic['model'])

    def strip(node):
        if isinstance(node, dict):
            node.pop('pretrained', None)
            for value in node.values():
                strip(value)
    strip(model_cfg)
    model_cfg['num_classes'] = int(model_cfg['num_classes']) + 1
    other = builder.build_component(model_cfg).state_dict()
    return [name for name, value in model.state_dict().items()
            if name in other and list(other[name].shape) != list(value.shape)]


def label_space_record(builder, model, train_dataset):
    """The record of a dataset in a compact or objectness label space; None
    for others."""
    space = getattr(train_dataset, 'label_space', None)
    if space is None or space.name == 'upstream':
        return None
    return dict(space.as_dict(), classes=list(getattr(train_dataset, 'class_names', [])),
                output_layer=output_layer_names(builder, model))


def write_record(record, save_dir):
    """Write ``<save_dir>/label_space.json``. The loop calls this with its
    first checkpoint, so a run that stops before saving leaves the folder as
    it was."""
    os.makedirs(save_dir, exist_ok=True)
    atomic_write_text(os.path.join(save_dir, RECORD), json.dumps(record, indent=1))


def read_record(weights_path):
    """The record of the run that wrote ``weights_path``
    (``<save_dir>/iter_<n>/model.pdparams``, or a file beside the record),
    or None."""
    folder = os.path.dirname(os.path.abspath(weights_path))
    for candidate in (folder, os.path.dirname(folder)):
        path = os.path.join(candidate, RECORD)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    record = json.load(f)
            except (OSError, ValueError):
                return None
            return record if isinstance(record, dict) else None
    return None


def keep_output_layer(model, weights_path):
    """The parameters of ``model`` that loading ``weights_path`` as
    ``model.pretrained`` must leave as they are: {name: copy of the value}
    (empty unless the file comes from a compact/objectness pre-training)."""
    record = read_record(weights_path)
    if not record:
        return {}
    state = model.state_dict()
    return {name: state[name].clone() for name in record.get('output_layer') or [] if name in state}
