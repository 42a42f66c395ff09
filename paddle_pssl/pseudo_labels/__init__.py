from . import store, pmm
