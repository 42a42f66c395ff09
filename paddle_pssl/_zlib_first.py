"""Shim for paddlepaddle 2.6.2: load Python's zlib before libpaddle.so.

libpaddle.so (2.6.2, CPU wheel) exports its own copy of zlib's symbols
(inflate*, deflate*). If Python's ``zlib`` extension is first loaded *after*
paddle, it binds to that copy and the first decompression crashes the process
(SIGSEGV in ``inflateReset2``): seen with ``np.load`` of ``.npz`` label files and
with ``import interpretdl`` (scikit-image's quickshift imports zlib). Loading
zlib first binds it to the system library. ``paddle_pssl/__init__.py``
imports this module before anything else, so every ``import paddle_pssl.<x>``
is covered; a script that imports paddle itself must import paddle_pssl first.
Harmless where it is not needed (paddlepaddle 3.3 does not crash).
"""
import zlib  # noqa: F401  (the import is the fix)
