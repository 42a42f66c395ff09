from .pssl import WeightedPSSLDataset
from . import toy, real_photos, synthetic
