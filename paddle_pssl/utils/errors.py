"""One error type for bad user input: its message is one line naming the file
or config key, and the CLIs print it as ``error: <message>``."""


class PSSLError(ValueError):
    pass


def one_line(exc):
    """The one-line message a CLI prints for ``exc``.

    PaddleSeg's builder wraps constructor errors in a multi-line RuntimeError;
    the useful part is its last line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
