from .pssl import WeightedPSSLDataset
from . import toy, real_photos, synthetic
from .classification_set import SourceItem, list_source
