from .errors import PSSLError, one_line
from .io import atomic_write, atomic_write_text, read_image_any, read_image_bgr
