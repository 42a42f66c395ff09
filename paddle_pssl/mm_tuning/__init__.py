"""Mix-and-Match tuning (Zhan et al., AAAI 2018): Mix samples labelled patches
from segmentation batches, Match links them into triplets. The loss is
``paddle_pssl.losses.triplet.MixMatchTripletLoss``; the tuning loop is
:mod:`.train`.
"""
from .patches import (PatchSampler, covered_fraction, crop_patch,
                      sample_batch_patches, select_boxes)
from .graph import build_triplets, eligible_anchors

__all__ = [
    "PatchSampler", "covered_fraction", "crop_patch", "sample_batch_patches",
    "select_boxes", "build_triplets", "eligible_anchors"
]
