from .weighted_ce import (PSSLCrossEntropyLoss, PixelWeightedLoss,
                          pixel_cross_entropy, weighted_pixel_mean)
from .triplet import MixMatchTripletLoss, triplet_margin_loss
from .puf import PUFCrossEntropyLoss, pretend_under_fitting
from .hfpl import (ImportanceSamplingLoss, GAPImportanceSamplingLoss,
                   FeatureSimilarityLoss, cam_to_class_map,
                   feature_similarity_loss, importance_sampling_loss,
                   gap_bce_loss, mix_gap_is)
