"""Benchmark jobs: each job is a list of command lines of the project's CLIs
(``python -m paddle_pssl <tool> ...``) run one after another in one worker
slot; several jobs run at once. A finished job leaves ``logs/<job>.done``
holding a fingerprint of its commands and inputs, so ``--resume`` reruns only
what did not finish or whose inputs changed. Relative paths in commands are
read from the current folder, as the CLIs read them.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import yaml

import paddle_pssl
from ..utils.errors import PSSLError
from ..utils.io import atomic_write_text


def tool(name, *args):
    """The argv (after the interpreter) that runs ``python -m paddle_pssl name args``."""
    return ['-m', 'paddle_pssl', name, *args]


# Files whose content decides a job's result; anything else (logs, json reports,
# VisualDL records) is left out of its fingerprint.
HASHED = ('.yml', '.yaml', '.txt', '.npz', '.png', '.jpg', '.jpeg', '.pdparams')
OUTPUT_FLAGS = ('--save_dir', '--save_root', '--save_json')


class Job(list):
    """A job: argv lists run one after another in one worker slot. ``outputs``
    are the files and folders it writes besides those named by
    ``--save_dir``/``--save_root``/``--save_json`` (e.g. a shared label store).
    ``inputs`` are further files and folders whose content decides its result
    (e.g. those a config names by a relative path)."""

    def __init__(self, commands, outputs=(), inputs=()):
        super().__init__(commands)
        self.outputs = [os.path.abspath(p) for p in outputs]
        self.inputs = [os.path.abspath(p) for p in inputs]

    def __add__(self, other):
        return Job(list(self) + list(other), self.outputs + list(getattr(other, 'outputs', [])),
                   self.inputs + list(getattr(other, 'inputs', [])))

    def _flagged(self, flags):
        return [os.path.abspath(v) for argv in self for f, v in zip(argv, argv[1:]) if f in flags]

    def own_dirs(self):
        """Folders this job alone writes: emptied before it runs."""
        return self._flagged(('--save_dir', '--save_root'))

    def all_outputs(self):
        return self._flagged(OUTPUT_FLAGS) + self.outputs


def _under(path, roots):
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _digest_file(path, h):
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)


_DIGESTS = {}   # (path, mtime, size) -> sha256: jobs sharing one input read it once


def _input_digest(path, outputs):
    """sha256 of a file, or of a folder's files of the ``HASHED`` kinds (with
    their relative paths), ``outputs`` left out."""
    def one(file):
        st = os.stat(file)
        key = (file, st.st_mtime_ns, st.st_size)
        if key not in _DIGESTS:
            h = hashlib.sha256()
            _digest_file(file, h)
            _DIGESTS[key] = h.hexdigest()
        return _DIGESTS[key]
    if not os.path.isdir(path):
        return one(path)
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not _under(os.path.join(root, d), outputs))
        for name in sorted(files):
            if name.endswith(HASHED):
                h.update(os.path.relpath(os.path.join(root, name), path).encode())
                h.update(one(os.path.join(root, name)).encode())
    return h.hexdigest()


def fingerprint(job):
    """Digest of a job's commands and of the content of every data, label,
    weight and config file they name, directly or as an absolute path inside a
    YAML config they pass (followed through ``_base_``), and of its ``inputs``,
    its own outputs aside."""
    outputs = job.all_outputs()
    h = hashlib.sha256(json.dumps(list(job)).encode())
    seen = set()

    def visit(value, here):
        if isinstance(value, dict):
            for v in value.values():
                visit(v, here)
        elif isinstance(value, list):
            for v in value:
                visit(v, here)
        elif isinstance(value, str) and (os.path.isabs(value) or value.endswith(('.yml', '.yaml'))):
            path = os.path.abspath(os.path.join(here, value))
            if os.path.exists(path):
                add(path)

    def add(path):
        if path in seen or _under(path, outputs):
            return
        seen.add(path)
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not _under(os.path.join(root, d), outputs))
                for name in sorted(files):
                    if name.endswith(HASHED):
                        h.update(os.path.relpath(os.path.join(root, name), path).encode())
                        _digest_file(os.path.join(root, name), h)
            return
        if not path.endswith(HASHED):
            return
        h.update(path.encode())
        _digest_file(path, h)
        if path.endswith(('.yml', '.yaml')):
            with open(path) as f:
                visit(yaml.safe_load(f), os.path.dirname(path))

    for argv in job:
        for arg in argv:
            path = os.path.abspath(arg)
            if arg.endswith(HASHED) or os.path.isabs(arg):
                if os.path.exists(path):
                    add(path)
    for path in getattr(job, 'inputs', ()):
        if path not in seen and not _under(path, outputs) and os.path.exists(path):
            seen.add(path)
            h.update(f'input {path} {_input_digest(path, outputs)}'.encode())
    return h.hexdigest()


def _done_path(log_dir, name):
    return os.path.join(log_dir, f'{name}.done')


def job_done(name, job, log_dir):
    """True when ``name`` finished before with the same fingerprint and its
    outputs are still there."""
    try:
        with open(_done_path(log_dir, name)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False
    return (all(os.path.exists(p) for p in job.all_outputs())
            and record.get('fingerprint') == fingerprint(job))


@contextlib.contextmanager
def folder_lock(folder, flag='--out', what='benchmark'):
    """Hold ``folder/.benchmark.lock`` for one run: a second run into the same
    folder would rebuild the data under the first one's jobs, so it is refused
    (``flag`` names the option that chose the folder)."""
    handle = open(os.path.join(folder, '.benchmark.lock'), 'a')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise PSSLError(f'{folder}: another {what} run is using this folder; '
                        f'wait for it to end, or choose another {flag}') from None
    try:
        yield
    finally:
        handle.close()   # closing releases the lock


def drop_optimizer_states(job):
    """Remove the ``model.pdopt`` files a finished job left in its own folders:
    a re-run starts from empty folders, so they would only take disk (as much
    again as the weights)."""
    for path in job.own_dirs():
        for root, _, files in os.walk(path):
            if 'model.pdopt' in files:
                os.remove(os.path.join(root, 'model.pdopt'))


def run_jobs(jobs, workers, log_dir, resume=False, log=None):
    """Run ``jobs`` ({name: Job or list of argv}) with at most ``workers``
    processes at once; stop at the first failure with one line naming the
    job's log. Every finished job leaves ``logs/<name>.done`` with its
    fingerprint; with ``resume`` a job whose record matches is not run again.
    A job that runs starts from empty ``--save_dir``/``--save_root`` folders,
    so a re-run never mixes with a killed attempt; a finished job's optimizer
    states are removed. -> {job: CPU seconds of its processes} (a reused
    job's from its record; None for older records)."""
    os.makedirs(log_dir, exist_ok=True)
    jobs = {name: job if isinstance(job, Job) else Job(job) for name, job in jobs.items()}
    pending, cpu = [], {}
    for name, job in jobs.items():
        if resume and job_done(name, job, log_dir):
            if log is not None:
                log(f'[benchmark] {name}: done before, reused')
            with open(_done_path(log_dir, name)) as f:
                cpu[name] = json.load(f).get('cpu_s')
            continue
        pending.append((name, job))
    running = {}
    # The jobs import the same paddle_pssl as this process, wherever it is installed.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(paddle_pssl.__file__)))
    env = dict(os.environ, PYTHONPATH=package_parent + os.pathsep + os.environ.get('PYTHONPATH', ''))

    def start(name, job):
        done = _done_path(log_dir, name)
        if os.path.exists(done):
            os.remove(done)
        for path in job.own_dirs():
            if os.path.isdir(path):
                shutil.rmtree(path)
        key = fingerprint(job)
        log_file = open(os.path.join(log_dir, f'{name}.log'), 'a')
        launch(name, list(job), log_file, key)

    def launch(name, commands, log_file, key):
        proc = subprocess.Popen([sys.executable, *commands[0]], stdout=log_file, stderr=subprocess.STDOUT,
                                env=env)
        running[name] = (proc, commands[1:], log_file, key)

    try:
        while pending or running:
            while pending and len(running) < max(int(workers), 1):
                start(*pending.pop(0))
            time.sleep(0.2)
            for name, (proc, rest, log_file, key) in list(running.items()):
                # wait4 gives the process's own CPU time (the jobs share the cores)
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == 0:
                    continue
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu[name] = round(cpu.get(name, 0.0) + usage.ru_utime + usage.ru_stime, 1)
                del running[name]
                if proc.returncode != 0:
                    log_file.close()
                    raise PSSLError(f"benchmark job {name} failed (exit {proc.returncode}); "
                                    f"see {os.path.join(log_dir, name + '.log')}")
                if rest:
                    launch(name, rest, log_file, key)
                else:
                    log_file.close()
                    drop_optimizer_states(jobs[name])
                    atomic_write_text(_done_path(log_dir, name),
                                      json.dumps({'fingerprint': key, 'cpu_s': cpu[name]}))
        return cpu
    finally:
        for proc, _, log_file, _ in running.values():
            proc.kill()
            log_file.close()


