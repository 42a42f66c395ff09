from .pssl import WeightedPSSLDataset
from . import toy
