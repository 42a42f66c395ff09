"""One lock file per run: what keeps two runs out of one output (a label
store's shard, a training ``save_dir``).

The lock is a file created with O_EXCL holding the holder's pid, host and
start time. A second run is refused in one line naming the holder. Stale-lock
rule: a lock of this host whose pid is not running, is this process's own
(a container restarted with the same pids), or is now a process that started
after the lock was written (the pid was reused), is taken over with a
warning; a lock of another host is refused unless ``break_lock``, since its
pid cannot be checked from here. An unreadable lock is treated like another
host's. Only the holder's own lock is removed when it ends; a run killed
with SIGKILL leaves its lock, which the next run on that host takes over.
"""
import contextlib
import json
import os
import socket
import time

from .errors import PSSLError

__all__ = ['RunLock']


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True    # exists, another user's (or not a pid we can ask about)
    return True


def _process_start(pid):
    """Wall-clock start time of ``pid`` (Linux /proc), or None."""
    try:
        with open(f'/proc/{int(pid)}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        with open('/proc/stat') as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith('btime'))
        return boot + int(fields[19]) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _warn(message):
    from paddleseg.utils import logger
    logger.warning(message)


class RunLock:
    """``with RunLock(path, what):`` holds the lock file ``path``.

    ``what`` starts the refusal and ``wait`` says what to do:
    ``f'{path}: {what} {holder}; {wait}, or if that run is gone pass
    --break_lock'``. ``break_lock`` takes over a lock of another host (the
    ``--break_lock`` flag of the tools)."""

    def __init__(self, path, what, break_lock=False, wait='wait for it to end'):
        self.path, self.what, self.break_lock, self.wait = path, what, break_lock, wait
        self.folder = os.path.dirname(path) or '.'
        now = time.time()
        self.me = {'pid': os.getpid(), 'host': socket.gethostname(),
                   'started': time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)),
                   'started_at': now}

    def _create(self):
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, json.dumps(self.me).encode())
        finally:
            os.close(fd)
        return True

    def holder(self):
        """The lock's record; {} when there is none, None when unreadable."""
        try:
            with open(self.path) as f:
                holder = json.load(f)
            return holder if isinstance(holder, dict) and {'pid', 'host'} <= set(holder) else None
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError):
            return None

    def _stale(self, holder):
        if holder is None or holder['host'] != self.me['host']:
            return False
        pid = int(holder['pid'])
        if pid == self.me['pid'] or not _alive(pid):
            return True
        since, started = holder.get('started_at'), _process_start(pid)
        # a process younger than the lock is not the one that wrote it
        return isinstance(since, (int, float)) and started is not None and started > since + 2

    def acquire(self):
        for _ in range(3):
            if self._create():
                return self
            holder = self.holder()
            if holder == {}:
                continue   # released meanwhile
            who = 'an unreadable lock' if holder is None else \
                f"pid {holder['pid']} on {holder['host']} since {holder.get('started')}"
            stale = self._stale(holder)
            if not (stale or self.break_lock):
                raise PSSLError(f'{self.path}: {self.what} {who}; {self.wait}, or if that run is '
                                'gone pass --break_lock')
            _warn(f'{self.path}: taking over the lock of {who}'
                  + (' (not running)' if stale else ' (--break_lock)'))
            if self.holder() == holder:    # not replaced by another taker meanwhile
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
        raise PSSLError(f'{self.path}: could not take the lock (other runs keep taking it)')

    def release(self):
        # remove only our own lock: one taken over meanwhile is not ours
        if self.holder() == self.me:
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
