"""See `python tools/export.py --help`; the logic is in paddle_pssl.tools_impl."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import paddle_pssl  # noqa: E402  (first: imports zlib before paddle, registers components)
from paddle_pssl.tools_impl import export_main  # noqa: E402
from paddle_pssl.utils.cli import run  # noqa: E402

if __name__ == '__main__':
    run(export_main)
