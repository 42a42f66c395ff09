from .weighted_ce import (PSSLCrossEntropyLoss, PixelWeightedLoss,
                          pixel_cross_entropy, weighted_pixel_mean)
from .triplet import MixMatchTripletLoss, triplet_margin_loss
