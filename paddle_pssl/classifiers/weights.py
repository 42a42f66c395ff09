"""Local weight files only: URLs are refused (nothing is downloaded at run time),
and ``.pdparams`` are loaded strictly (every key present, every shape equal),
through the reader that runs no pickled code."""
import os
import re

from ..utils.safe_load import safe_load

__all__ = ["check_local_weights_path", "load_pdparams_strict"]

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def check_local_weights_path(path) -> str:
    """Return ``path`` as a str if it names an existing local file, else raise."""
    text = os.fspath(path)
    if _URL.match(text):
        raise ValueError(
            "refusing to use weights from the URL %r: paddle-pssl never downloads "
            "at run time; download the file yourself and pass its local path" % text)
    if not os.path.isfile(text):
        raise FileNotFoundError("weights file %r does not exist" % text)
    return text


def load_pdparams_strict(model, path, skip_prefixes=()):
    """Load a Paddle ``.pdparams`` state dict into ``model``, refusing mismatches.

    Keys starting with one of ``skip_prefixes`` are neither loaded nor required
    (e.g. the classifier layer when the number of classes differs).
    """
    path = check_local_weights_path(path)
    state = safe_load(path)
    if not isinstance(state, dict):
        raise ValueError("%s does not hold a state dict" % path)
    from ..utils.checkpoint import first_mismatch
    skip = tuple(skip_prefixes)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    given = {k: v for k, v in state.items() if not k.startswith(skip)}
    problem = first_mismatch(given, own)
    unexpected = [k for k in given if k not in own]
    if problem is None and unexpected:
        problem = '%s is in the file, not in the model (%d such)' % (unexpected[0], len(unexpected))
    if problem:
        raise ValueError("%s does not fit %s: %s" % (path, type(model).__name__, problem))
    model.set_state_dict(given)
    return model
