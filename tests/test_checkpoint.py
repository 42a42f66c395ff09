"""The checkpoint helper every training loop uses: a checkpoint appears whole
or not at all, the last N are kept across runs, resume finds the newest
complete one and refuses an incomplete one by name, leftovers of a killed
save are cleaned up, and files get ordinary permissions."""
import json
import os
import stat

import numpy as np
import pytest

import paddle_pssl  # noqa: F401  (zlib before paddle)
import paddle

from paddle_pssl.utils.checkpoint import (Checkpoints, newest_complete, read_checkpoint,
                                          require_complete)
from paddle_pssl.utils.errors import PSSLError
from paddle_pssl.utils.io import atomic_paddle_save


def _params(value):
    return {'w': paddle.to_tensor(np.full([2, 3], value, np.float32))}


def _opt(value):
    return {'w_velocity_0': paddle.to_tensor(np.full([2, 3], -value, np.float32)),
            'LR_Scheduler': {'last_epoch': int(value)}}


def _iters(save_dir):
    return sorted(int(n[5:]) for n in os.listdir(save_dir) if n.startswith('iter_'))


def test_save_writes_both_files_and_state_and_reads_back(tmp_path):
    ckpts = Checkpoints(str(tmp_path), keep=2, with_state=True)
    folder = ckpts.save(3, _params(3.0), _opt(3.0), {'iteration': 3, 'acc': np.float32(0.5)})
    assert folder == str(tmp_path / 'iter_3')
    assert sorted(os.listdir(folder)) == ['model.pdopt', 'model.pdparams', 'state.json']
    assert os.listdir(tmp_path) == ['iter_3']   # no staging folder left behind
    got = read_checkpoint(folder, with_state=True)
    assert got.iteration == 3 and got.state == {'iteration': 3, 'acc': 0.5}
    np.testing.assert_array_equal(got.params['w'].numpy(), np.full([2, 3], 3.0, np.float32))
    np.testing.assert_array_equal(got.optimizer['w_velocity_0'].numpy(), -np.full([2, 3], 3.0))


def test_keep_last_n_counts_checkpoints_of_an_earlier_run(tmp_path):
    first = Checkpoints(str(tmp_path), keep=2)
    for n in (1, 2, 3):
        first.save(n, _params(n), _opt(n))
    assert _iters(tmp_path) == [2, 3]
    second = Checkpoints(str(tmp_path), keep=2)  # a resumed run, a new helper
    second.save(4, _params(4), _opt(4))
    assert _iters(tmp_path) == [3, 4]
    # a save of a lower n than what is on disk is kept (never the one just written)
    second.save(1, _params(1), _opt(1))
    assert _iters(tmp_path) == [1, 4]
    assert newest_complete(str(tmp_path)) == str(tmp_path / 'iter_4')
    keep_all = Checkpoints(str(tmp_path), keep=0)
    for n in (5, 6, 7):
        keep_all.save(n, _params(n), _opt(n))
    assert _iters(tmp_path) == [1, 4, 5, 6, 7]


def test_saving_the_same_iteration_again_replaces_it(tmp_path):
    ckpts = Checkpoints(str(tmp_path), keep=2)
    ckpts.save(2, _params(1.0), _opt(1.0))
    ckpts.save(2, _params(7.0), _opt(7.0))
    assert sorted(os.listdir(tmp_path)) == ['iter_2']
    assert float(read_checkpoint(str(tmp_path / 'iter_2')).params['w'].numpy()[0, 0]) == 7.0


def test_a_save_that_fails_half_way_leaves_the_old_set(tmp_path, monkeypatch):
    ckpts = Checkpoints(str(tmp_path), keep=1)
    ckpts.save(1, _params(1.0), _opt(1.0))
    real_save = paddle.save

    def dying_save(obj, path, *args, **kwargs):
        if path.endswith('.pdopt'):
            raise KeyboardInterrupt('killed while saving')
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(paddle, 'save', dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpts.save(2, _params(2.0), _opt(2.0))
    assert sorted(os.listdir(tmp_path)) == ['iter_1']
    assert newest_complete(str(tmp_path)) == str(tmp_path / 'iter_1')


def test_newest_complete_skips_incomplete_folders(tmp_path):
    Checkpoints(str(tmp_path)).save(2, _params(2.0), _opt(2.0))
    (tmp_path / 'iter_9').mkdir()                            # PaddleSeg's makedirs, then killed
    (tmp_path / 'iter_5').mkdir()
    atomic_paddle_save(_params(5.0), str(tmp_path / 'iter_5' / 'model.pdparams'))
    (tmp_path / 'iter_x').mkdir()
    assert newest_complete(str(tmp_path)) == str(tmp_path / 'iter_2')
    assert newest_complete(str(tmp_path), with_state=True) is None
    assert newest_complete(str(tmp_path / 'nothing_here')) is None


def test_resume_from_an_incomplete_checkpoint_is_refused_by_name(tmp_path):
    Checkpoints(str(tmp_path)).save(2, _params(2.0), _opt(2.0))
    (tmp_path / 'iter_5').mkdir()
    atomic_paddle_save(_params(5.0), str(tmp_path / 'iter_5' / 'model.pdparams'))
    with pytest.raises(PSSLError) as err:
        read_checkpoint(str(tmp_path / 'iter_5'), flag='--resume_model')
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'iter_5'}: incomplete checkpoint (model.pdopt missing)")
    assert str(tmp_path / 'iter_2') in message and '\n' not in message
    with pytest.raises(PSSLError, match='state.json missing'):
        require_complete(str(tmp_path / 'iter_2'), with_state=True)
    with pytest.raises(PSSLError, match='--resume directory not found'):
        require_complete(str(tmp_path / 'iter_7'))
    os.rename(tmp_path / 'iter_2', tmp_path / 'best')
    with pytest.raises(PSSLError, match='needs an iter_<n> checkpoint directory'):
        require_complete(str(tmp_path / 'best'), need_name=True)
    assert read_checkpoint(str(tmp_path / 'best')).iteration is None   # the name is optional


def test_leftovers_of_a_killed_save_are_removed_or_rolled_back(tmp_path):
    ckpts = Checkpoints(str(tmp_path), keep=3)
    for n in (1, 2, 3):
        ckpts.save(n, _params(n), _opt(n))
    # killed while staging iter_4, mid-delete of a pruned one, while replacing iter_3
    # (between its two renames), and while atomic_paddle_save wrote model files
    staging = ckpts.stage(4)
    paddle.save(_params(4.0), staging.file('model.pdparams'))
    os.rename(tmp_path / 'iter_1', tmp_path / '.tmp_del_iter_1.0a0b')
    os.rename(tmp_path / 'iter_3', tmp_path / '.tmp_old_iter_3.0c0d')
    (tmp_path / '.tmp_old_iter_2.0e0f').mkdir()             # iter_2 itself did get replaced
    (tmp_path / '.tmp_1a2b3c.pdparams').write_bytes(b'half')
    (tmp_path / 'best_model').mkdir()
    (tmp_path / 'best_model' / '.tmp_4d5e6f.pdparams').write_bytes(b'half')
    (tmp_path / '.tmp_notes.txt').write_text('another tool, writing right now')
    Checkpoints(str(tmp_path), keep=3)
    assert sorted(os.listdir(tmp_path)) == ['.tmp_notes.txt', 'best_model', 'iter_2', 'iter_3']
    assert os.listdir(tmp_path / 'best_model') == []
    assert float(read_checkpoint(str(tmp_path / 'iter_3')).params['w'].numpy()[0, 0]) == 3.0


def test_files_and_folders_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        folder = Checkpoints(str(tmp_path), with_state=True).save(
            1, _params(1.0), _opt(1.0), {'iteration': 1})
        atomic_paddle_save(_params(1.0), str(tmp_path / 'model.pdparams'))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    for path in [os.path.join(folder, n) for n in os.listdir(folder)] + [
            str(tmp_path / 'model.pdparams')]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path
    with open(os.path.join(folder, 'state.json')) as f:
        assert json.load(f) == {'iteration': 1}


def test_paddleseg_loop_saves_are_committed_as_a_pair(tmp_path):
    """The paddle PaddleSeg's loop sees: iter_N/ appears once both files are
    written, the helper keeps the last N, other files are written atomically."""
    from paddle_pssl.core.train import _LoopPaddle
    view = _LoopPaddle(Checkpoints(str(tmp_path), keep=2), ('model.pdparams', 'model.pdopt'))
    for n in (1, 2, 3):
        folder = tmp_path / f'iter_{n}'
        folder.mkdir()                                       # as the loop's makedirs does
        view.save(_params(n), str(folder / 'model.pdparams'))
        assert os.listdir(folder) == [] and newest_complete(str(tmp_path)) != str(folder)
        view.save(_opt(n), str(folder / 'model.pdopt'))
        assert newest_complete(str(tmp_path)) == str(folder)
    assert _iters(tmp_path) == [2, 3]
    view.save(_params(9.0), str(tmp_path / 'best_model' / 'model.pdparams'))
    assert os.listdir(tmp_path / 'best_model') == ['model.pdparams']
    view.save(_params(4.0), str(tmp_path / 'iter_4' / 'model.pdparams'))
    view.abort()                                             # the run ended before the pair
    assert sorted(os.listdir(tmp_path)) == ['best_model', 'iter_2', 'iter_3']
    assert view.ones_like is paddle.ones_like                # the rest is paddle's


def test_weights_that_do_not_fit_name_the_first_parameter_with_both_shapes(tmp_path):
    """--resume_model and a classifier's weights: the first mismatch; pretrained
    (loaded by shape): refused only when it fits almost nothing."""
    from paddle_pssl.utils.checkpoint import first_mismatch, require_fit, require_pretrained_fit
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.Linear(3, 2))
    own = model.state_dict()
    assert first_mismatch(own, own) is None
    other = dict(own, **{'0.weight': paddle.zeros([5, 3])})
    assert first_mismatch(other, own) == '0.weight is [5, 3] in the file, [4, 3] in the model'
    assert first_mismatch({'x': paddle.zeros([2])}, own) == '0.weight [4, 3] is not in the file; its first is x [2]'
    with pytest.raises(PSSLError, match=r'^f\.pdparams: --resume_model does not fit Sequential: 0\.weight is \[5, 3\]'):
        require_fit('f.pdparams', other, model, '--resume_model')
    assert require_pretrained_fit('f.pdparams', other, model) == 3    # 3 of 4 fit: loaded by shape
    with pytest.raises(PSSLError, match=r'fits 0 of the 4 parameters of Sequential, so it would train '
                                        r'from random weights; first: 0\.weight \[4, 3\] is not in the file'):
        require_pretrained_fit('f.pdparams', {'x': paddle.zeros([2])}, model)


def test_a_fresh_loop_refuses_an_earlier_runs_checkpoints_and_deletes_nothing(tmp_path):
    """A training loop called without a claim on its save_dir (the library
    used directly): an earlier run is refused in one line, not removed."""
    earlier = Checkpoints(str(tmp_path), keep=0)
    for n in (100, 200):
        earlier.save(n, _params(n), _opt(n))
    os.makedirs(tmp_path / 'iter_300')            # incomplete: not offered to resume
    fresh = Checkpoints(str(tmp_path), keep=2)
    with pytest.raises(PSSLError) as refused:
        fresh.refuse_earlier_run('--resume_model', model_dirs=True)
    assert str(refused.value) == (
        f'{tmp_path}: holds an earlier run (iter_100, iter_200, iter_300); to continue it pass '
        f'--resume_model {tmp_path}/iter_200, to keep it choose another --save_dir, to delete it '
        'pass --overwrite')
    assert sorted(os.listdir(tmp_path)) == ['iter_100', 'iter_200', 'iter_300']
    # best_model counts for PaddleSeg's loop (model_dirs), not for the classifier loop
    other = tmp_path / 'other'
    os.makedirs(other / 'best_model')
    Checkpoints(str(other)).refuse_earlier_run('--resume')
    with pytest.raises(PSSLError, match='holds an earlier run \\(best_model\\)'):
        Checkpoints(str(other)).refuse_earlier_run('--resume_model', model_dirs=True)


def test_an_unreadable_checkpoint_names_the_newest_whole_one_beside_it(tmp_path):
    """A truncated file in the newest checkpoint: the line names the file and
    the newest checkpoint beside it whose files read (not the broken one)."""
    from paddle_pssl.utils.checkpoint import newest_whole
    ckpts = Checkpoints(str(tmp_path), keep=0)
    for n in (1, 2, 3):
        ckpts.save(n, _params(n), _opt(n))
    for n in (2, 3):    # two broken ones: the newest whole is iter_1
        path = tmp_path / f'iter_{n}' / 'model.pdparams'
        path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(PSSLError) as broken:
        read_checkpoint(str(tmp_path / 'iter_3'), flag='--resume_model')
    message = str(broken.value)
    assert message.startswith(f'{tmp_path}/iter_3/model.pdparams: not a readable Paddle weights file')
    assert message.endswith(f'; cannot --resume_model from it; newest whole checkpoint beside it: '
                            f'{tmp_path}/iter_1')
    assert newest_whole(str(tmp_path)) == str(tmp_path / 'iter_1')
    # an incomplete one names a whole one too, never itself
    os.remove(tmp_path / 'iter_1' / 'model.pdopt')
    with pytest.raises(PSSLError, match='model.pdopt missing.*; no whole checkpoint beside it$'):
        require_complete(str(tmp_path / 'iter_1'))
