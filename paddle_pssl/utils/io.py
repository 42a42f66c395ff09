"""Small I/O helpers: atomic writes and image reading with clear errors."""
import os

import cv2
import numpy as np

from .errors import PSSLError


def _new_temp_file(directory, suffix):
    """Create an empty ``<directory>/.tmp_<random><suffix>``; unlike mkstemp's
    0600 its mode is 0666 minus the umask, as for any file the user writes."""
    while True:
        tmp = os.path.join(directory, f'.tmp_{os.urandom(6).hex()}{suffix}')
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path, write_fn, suffix=''):
    """Call ``write_fn(tmp_path)`` then rename onto ``path``: a killed run
    leaves either the old file or the new one, never half a file (and at
    worst a ``.tmp_*`` file beside it)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = _new_temp_file(directory, suffix or os.path.splitext(path)[1])
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_paddle_save(obj, path):
    """``paddle.save`` through a temporary file: a kill mid-save never leaves
    a truncated ``.pdparams``/``.pdopt`` behind."""
    import paddle
    atomic_write(path, lambda tmp: paddle.save(obj, tmp))


def atomic_write_text(path, text):
    def _write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_write(path, _write, suffix='.txt')


def json_default(o):
    """``json.dump(..., default=json_default)``: numpy scalars and arrays as Python values."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def read_image_bgr(path, min_size=1):
    """Read any image OpenCV can decode as 3-channel uint8 BGR.

    Greyscale is expanded, alpha is dropped, 16-bit is scaled to 8-bit
    (IMREAD_COLOR does all three). Raises PSSLError naming the file.
    """
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: image file not found')
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise PSSLError(f'{path}: cannot decode image (corrupt or unsupported format)')
    if min(image.shape[:2]) < min_size:
        raise PSSLError(f'{path}: image is {image.shape[1]}x{image.shape[0]}, '
                        f'smaller than {min_size} pixels')
    return np.ascontiguousarray(image)


def check_jpeg_complete(path):
    """Raise PSSLError if ``path`` is a JPEG whose data stops early (a cut
    download or copy). OpenCV decodes such a file with a grey lower part and
    only a libjpeg warning on stderr; Pillow's decoder raises instead. It
    decodes at 1/8 scale (all the entropy-coded data is still read, so the
    check is complete and cheap). Other formats are left to OpenCV, which
    refuses a truncated PNG."""
    with open(path, 'rb') as f:
        if f.read(3) != b'\xff\xd8\xff':
            return
    from PIL import Image, ImageFile
    try:
        image = Image.open(path)
    except Exception:   # noqa: BLE001  (not Pillow-readable: OpenCV decides)
        return
    keep, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with image:
            image.draft(image.mode, (max(image.width // 8, 1), max(image.height // 8, 1)))
            image.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise PSSLError(f'{path}: truncated or damaged JPEG ({e})'.splitlines()[0])
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = keep


def image_size(path):
    """(width, height) from the file's header (Pillow reads no pixels), or
    None when Pillow cannot tell."""
    from PIL import Image
    keep, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None   # a size, not a decode
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:   # noqa: BLE001  (not Pillow-readable: OpenCV decides)
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = keep


_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def read_image_any(path, min_size=8, reduce_to=None):
    """Read an image and make it 3-channel uint8 BGR, saying what was converted.

    -> (image, note) with note in {'', 'grey', 'alpha', '16bit', ...}, joined
    by '+'. Raises PSSLError (naming the file) for unreadable, truncated
    (:func:`check_jpeg_complete`) or tiny images. With ``reduce_to``, an image
    whose long side is at least twice that is decoded at 1/2, 1/4 or 1/8
    (OpenCV's reduced reads, JPEG scaled while decoding; never below
    ``reduce_to``): OpenCV's Python binding copies what it decodes, so a full
    decode of a 100-megapixel photo would hold it twice.
    """
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: image file not found')
    check_jpeg_complete(path)
    flag = cv2.IMREAD_UNCHANGED
    size = image_size(path) if reduce_to else None
    if size and max(size) >= 2 * reduce_to:
        factor = max(f for f in _REDUCED if max(size) >= f * reduce_to)
        flag = _REDUCED[factor] | cv2.IMREAD_IGNORE_ORIENTATION   # as IMREAD_UNCHANGED
    image = cv2.imread(path, flag)
    if image is None:
        raise PSSLError(f'{path}: cannot decode image (corrupt or unsupported format)')
    notes = []
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
        notes.append('16bit')
    elif image.dtype != np.uint8:
        raise PSSLError(f'{path}: unsupported pixel type {image.dtype}')
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
        notes.append('grey')
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        notes.append('alpha')
    elif image.shape[2] != 3:
        raise PSSLError(f'{path}: {image.shape[2]} channels, expected 1, 3 or 4')
    if min(image.shape[:2]) < min_size:
        raise PSSLError(f'{path}: image is {image.shape[1]}x{image.shape[0]}, '
                        f'smaller than {min_size} pixels')
    return np.ascontiguousarray(image), '+'.join(notes)
