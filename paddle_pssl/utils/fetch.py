"""``pretrained:`` URLs, downloaded by PaddleSeg's own downloader (same cache,
``$SEG_HOME/pretrained_model/<name>/model.pdparams``, same naming, archives
unpacked the same way), with three guards around it:

* an HTTP error status fails (PaddleSeg would store the error page as weights),
  and a connection gives up after :data:`CONNECT_TIMEOUT` seconds;
* members of a downloaded tar cannot land outside the cache folder (Python's
  ``data`` extraction filter);
* any failure is one line naming the config key:
  ``model.backbone.pretrained: cannot download <url> (<reason>); point it at a
  local .pdparams file``.

The file is then read by :func:`~paddle_pssl.utils.safe_load.safe_load` like
any local one (PaddleSeg's ``load_pretrained_model`` reads it through the
``paddle`` view that ``paddle_pssl/_paddleseg_compat.py`` gives it).
"""
import importlib
import os
import re
import tarfile
import zipfile

import requests

from .errors import PSSLError

__all__ = ['CONNECT_TIMEOUT', 'READ_TIMEOUT', 'fetch_pretrained', 'note_url_key']

CONNECT_TIMEOUT, READ_TIMEOUT = 5, 30

_seg_download = importlib.import_module('paddleseg.utils.download')
_seg_utils = importlib.import_module('paddleseg.utils.utils')
# PaddleSeg's function, kept before _paddleseg_compat puts fetch_pretrained in its place
_paddleseg_download_pretrained_model = getattr(
    _seg_utils.download_pretrained_model, '__wrapped__', _seg_utils.download_pretrained_model)

# URL -> the config key that named it, for the error line (set by config loading)
_URL_KEYS = {}


def note_url_key(url, key):
    """Remember that config key ``key`` names ``url``."""
    _URL_KEYS[url] = key


class _CheckedRequests:
    """``requests`` as PaddleSeg's downloader sees it: ``get`` with our
    timeouts that raises on an HTTP error status."""

    def __getattr__(self, name):
        return getattr(requests, name)

    @staticmethod
    def get(url, **kwargs):
        kwargs['timeout'] = (CONNECT_TIMEOUT, READ_TIMEOUT)
        response = requests.get(url, **kwargs)
        response.raise_for_status()
        return response


def _reason(exc):
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f'HTTP {exc.response.status_code}'
    if isinstance(exc, requests.Timeout):
        return 'timed out'
    text = ' '.join(str(exc).split())
    errno = re.findall(r'\[Errno -?\d+\] [^\'")]+', text)
    if errno:
        return errno[-1].strip()
    return (text[:120] or type(exc).__name__)


def fetch_pretrained(url):
    """Local path of the weights at ``url``, downloaded into PaddleSeg's cache
    unless already there; PSSLError of one line when that fails."""
    key = _URL_KEYS.get(url, 'pretrained')
    saved_requests = _seg_download.requests
    # Python >= 3.11.4 has the filter (and a class attribute to set it, None by default)
    guard_tar = hasattr(tarfile, 'data_filter')
    saved_filter = vars(tarfile.TarFile).get('extraction_filter')
    _seg_download.requests = _CheckedRequests()
    if guard_tar:
        tarfile.TarFile.extraction_filter = staticmethod(tarfile.data_filter)
    try:
        path = _paddleseg_download_pretrained_model(url)
    except (requests.RequestException, OSError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise PSSLError(f'{key}: cannot download {url} ({_reason(e)}); '
                        'point it at a local .pdparams file') from None
    finally:
        _seg_download.requests = saved_requests
        if guard_tar:
            tarfile.TarFile.extraction_filter = saved_filter
    if not os.path.isfile(path):
        raise PSSLError(f'{key}: {url} did not give {os.path.basename(path)} '
                        f'(looked in {os.path.dirname(path)}); point it at a local .pdparams file')
    return path


fetch_pretrained.__wrapped__ = _paddleseg_download_pretrained_model
