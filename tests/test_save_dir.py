"""Claiming a training save_dir (paddle_pssl/utils/save_dir.py) and the run
lock it shares with the label store's shards (paddle_pssl/utils/run_lock.py):
an earlier run is refused and kept, deleted only with overwrite; a second
run into the folder is refused while the first holds it; stale locks of this
host are taken over with a warning. The tools' side is in
tests/test_bad_input_corpus.py (probes through the CLIs)."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

import paddle_pssl  # noqa: F401  (zlib before paddle)
from paddle_pssl.utils.checkpoint import Checkpoints
from paddle_pssl.utils.errors import PSSLError
from paddle_pssl.utils.save_dir import LOCK_NAME, claim_save_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _earlier_run(folder):
    import numpy as np
    import paddle
    ckpts = Checkpoints(str(folder), keep=0)
    for n in (2, 4):
        ckpts.save(n, {'w': paddle.to_tensor(np.full([2], n, np.float32))}, {'lr': n})
    os.makedirs(folder / 'best_model')
    (folder / 'vdlrecords.1700000000.log').write_bytes(b'curves of the earlier run')
    (folder / 'notes.txt').write_text('mine')


def _tree(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, dirs, files in os.walk(folder) for name in dirs + files)


def test_an_earlier_run_is_refused_and_kept(tmp_path):
    _earlier_run(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(PSSLError) as refused:
        with claim_save_dir(str(tmp_path)):
            pass
    assert str(refused.value) == (
        f'{tmp_path}: holds an earlier run (iter_2, iter_4, best_model); to continue it pass '
        f'--resume_model {tmp_path}/iter_4, to keep it choose another --save_dir, to delete it pass '
        '--overwrite')
    assert _tree(tmp_path) == before       # the lock is gone again, nothing else moved


def test_overwrite_deletes_the_earlier_run_only_and_says_so(tmp_path, capsys):
    _earlier_run(tmp_path)
    with claim_save_dir(str(tmp_path), overwrite=True):
        assert sorted(os.listdir(tmp_path)) == [LOCK_NAME, 'notes.txt']
    assert os.listdir(tmp_path) == ['notes.txt']
    said = [line for line in capsys.readouterr().out.splitlines() if '--overwrite' in line]
    assert len(said) == 1 and said[0].endswith(
        f'{tmp_path}: --overwrite: deleted the earlier run (iter_2, iter_4, best_model, '
        'vdlrecords.1700000000.log)')


def test_a_resume_continues_its_own_run_and_not_into_another(tmp_path):
    _earlier_run(tmp_path)
    with claim_save_dir(str(tmp_path), resume=str(tmp_path / 'iter_2')):   # its own run: fine
        pass
    with pytest.raises(PSSLError, match='--overwrite would delete the run it continues'):
        with claim_save_dir(str(tmp_path), resume=str(tmp_path / 'iter_2'), overwrite=True):
            pass
    other = tmp_path.parent / f'{tmp_path.name}_elsewhere' / 'iter_9'
    other.mkdir(parents=True)
    with pytest.raises(PSSLError, match=r'holds another run \(iter_2, iter_4, best_model\) than the one '
                                        r'--resume_model .*_elsewhere/iter_9 continues'):
        with claim_save_dir(str(tmp_path), resume=str(other)):
            pass
    assert os.path.isdir(tmp_path / 'iter_4')


def test_claims_nest_and_a_folder_made_for_nothing_is_removed(tmp_path):
    save_dir = tmp_path / 'new'
    with claim_save_dir(str(save_dir)):
        with claim_save_dir(str(save_dir)):        # the loop's claim inside the tool's
            assert os.path.isfile(save_dir / LOCK_NAME)
        assert os.path.isfile(save_dir / LOCK_NAME)
        # a claimed folder: the loop's check leaves the decision to the claim
        Checkpoints(str(save_dir)).refuse_earlier_run('--resume_model', model_dirs=True)
    assert not save_dir.exists()                   # made here, left empty: removed
    with pytest.raises(PSSLError, match='is a file, not a folder'):
        (tmp_path / 'file').write_text('x')
        with claim_save_dir(str(tmp_path / 'file')):
            pass


HOLDER = r'''
import sys, time
from paddle_pssl.utils.save_dir import claim_save_dir
with claim_save_dir(sys.argv[1]):
    open(sys.argv[2], 'w').close()
    while not __import__('os').path.exists(sys.argv[3]):
        time.sleep(0.05)
'''


def test_a_second_run_is_refused_while_the_first_holds_the_folder(tmp_path):
    save_dir, ready, done = tmp_path / 'run', tmp_path / 'ready', tmp_path / 'done'
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(save_dir), str(ready), str(done)],
                              env=dict(os.environ, PYTHONPATH=REPO))
    try:
        deadline = time.time() + 120
        while not ready.exists():
            assert holder.poll() is None and time.time() < deadline
            time.sleep(0.05)
        with pytest.raises(PSSLError) as refused:
            with claim_save_dir(str(save_dir)):
                pass
        assert str(refused.value).startswith(
            f'{save_dir}/{LOCK_NAME}: another run is writing to this save_dir: pid {holder.pid} on '
            f'{socket.gethostname()} since ')
        assert str(refused.value).endswith(
            'wait for it to end or choose another --save_dir, or if that run is gone pass --break_lock')
    finally:
        done.write_text('')
        holder.wait(timeout=60)
    assert holder.returncode == 0
    with claim_save_dir(str(save_dir)):            # free again once it ended
        pass


def _lock(folder, pid, host=None, started_at=None):
    os.makedirs(folder, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({
        'pid': pid, 'host': host or socket.gethostname(), 'started': 'then',
        'started_at': time.time() if started_at is None else started_at}))


def test_stale_locks_of_this_host_are_taken_over_with_a_warning(tmp_path, capsys):
    gone = subprocess.Popen(['true'])
    gone.wait()
    _lock(tmp_path, gone.pid)                      # a run killed with SIGKILL
    with claim_save_dir(str(tmp_path)):
        assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
    # its pid now names a process that started after the lock: reused, not the run
    reused = subprocess.Popen(['sleep', '30'])
    try:
        _lock(tmp_path, reused.pid, started_at=time.time() - 3600)
        with claim_save_dir(str(tmp_path)):
            pass
    finally:
        reused.kill()
        reused.wait()
    took = [line for line in capsys.readouterr().out.splitlines() if 'taking over the lock' in line]
    assert len(took) == 2 and all(line.endswith('(not running)') for line in took), took
    assert not os.listdir(tmp_path)


def test_another_hosts_lock_needs_break_lock(tmp_path):
    _lock(tmp_path, 1, host='gpu-node-3')          # its pid cannot be checked from here
    with pytest.raises(PSSLError, match='pid 1 on gpu-node-3 since then; .* pass --break_lock'):
        with claim_save_dir(str(tmp_path)):
            pass
    with claim_save_dir(str(tmp_path), break_lock=True):
        assert json.loads((tmp_path / LOCK_NAME).read_text())['host'] == socket.gethostname()
    assert not os.listdir(tmp_path)
