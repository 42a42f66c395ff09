from . import store
