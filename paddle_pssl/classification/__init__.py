"""Classifier training (plain GAP cross-entropy or with the HFPL losses) for
the classifiers whose explanations become PSSL labels; see :mod:`.train`."""

from .dataset import (ClassificationSet, load_classification_set,  # noqa: E402
                      split_train_val)
from .train import (RESULT_FILE, cam_logits, evaluate_accuracy,  # noqa: E402
                    train_classifier, train_cls_main)

__all__ = ['ClassificationSet', 'RESULT_FILE', 'cam_logits',
           'evaluate_accuracy', 'load_classification_set',
           'split_train_val', 'train_classifier', 'train_cls_main']
