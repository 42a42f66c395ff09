"""Weight files are read without running pickled code (utils/safe_load.py), and
``pretrained:`` URLs are fetched as PaddleSeg fetches them (utils/fetch.py),
from a local HTTP server on 127.0.0.1 only."""
import contextlib
import functools
import http.server
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import paddle
import pytest
import yaml

import paddle_pssl  # noqa: F401  (installs the PaddleSeg shims)
from paddle_pssl.utils.errors import PSSLError
from paddle_pssl.utils.safe_load import UnsafePickleError, safe_load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN = os.path.join(REPO, 'configs', 'pretrain', 'deeplabv3_resnet50_vd_pssl.yml')


class _Evil:
    """Pickles as a call of ``func(arg)``: what a crafted weights file holds."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _evil_file(tmp_path, name='evil.pdparams', protocol=2):
    marker = tmp_path / 'pwned'
    path = tmp_path / name
    with open(path, 'wb') as f:
        pickle.dump({'conv.weight': np.zeros([2, 2], np.float32),
                     'x': _Evil(os.system, f'touch {marker}')}, f, protocol=protocol)
    return str(path), marker


def _model_and_optimizer():
    paddle.seed(3)
    with paddle.utils.unique_name.guard():   # the same parameter and state names each time
        model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4),
                                     paddle.nn.Flatten(), paddle.nn.Linear(4 * 6 * 6, 2))
        scheduler = paddle.optimizer.lr.PolynomialDecay(0.01, 10, end_lr=0)
        optimizer = paddle.optimizer.Momentum(scheduler, parameters=model.parameters())
        model(paddle.randn([2, 3, 8, 8])).mean().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, paddle.Tensor):
        assert (a.name, a.dtype, a.shape) == (b.name, b.dtype, b.shape)
        assert np.array_equal(a.numpy(), b.numpy())
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize('protocol', [2, 3, 4])
def test_state_dict_and_optimizer_state_read_as_paddle_load_reads_them(tmp_path, protocol):
    model, optimizer = _model_and_optimizer()
    files = {'model.pdparams': model.state_dict(), 'model.pdopt': optimizer.state_dict(),
             'nested.pd': {'model': model.state_dict(), 'epoch': 3, 'lr': np.float32(0.5),
                           'tags': ('a', 'b')}}
    for name, obj in files.items():
        path = str(tmp_path / name)
        paddle.save(obj, path, protocol=protocol)
        for return_numpy in (False, True):
            _assert_same(safe_load(path, return_numpy=return_numpy),
                         paddle.load(path, return_numpy=return_numpy))
    # and they load back into a model and an optimizer
    model2, optimizer2 = _model_and_optimizer()
    model2.set_state_dict(safe_load(str(tmp_path / 'model.pdparams')))
    optimizer2.set_state_dict(safe_load(str(tmp_path / 'model.pdopt')))
    for (k, v), v2 in zip(model.state_dict().items(), model2.state_dict().values()):
        assert np.array_equal(v.numpy(), v2.numpy()), k
    assert optimizer2._learning_rate.last_epoch == optimizer._learning_rate.last_epoch


@pytest.mark.parametrize('protocol', [2, 4])
def test_crafted_file_is_refused_naming_file_and_global(tmp_path, protocol):
    path, marker = _evil_file(tmp_path, protocol=protocol)
    with pytest.raises(UnsafePickleError) as err:
        safe_load(path)
    assert str(err.value) == (f'{path}: refused to load: the pickle asks for '
                              f'{os.system.__module__}.system (not weights data)')
    assert isinstance(err.value, PSSLError) and not marker.exists()


def test_other_non_weights_pickles_are_refused(tmp_path):
    path = tmp_path / 'x.pdparams'
    # an array of Python objects (its items could be anything)
    path.write_bytes(pickle.dumps({'w': np.array([1, 'a'], dtype=object)}, protocol=2))
    with pytest.raises(UnsafePickleError, match='array of Python objects'):
        safe_load(str(path))
    # eval, the way paddle.save pickles a static-graph LoDTensor
    path.write_bytes(pickle.dumps({'w': _Evil(eval, '1+1')}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r'builtins\.eval'):
        safe_load(str(path))
    # an allow-listed stand-in may not be modified by a BUILD opcode
    path.write_bytes(b'\x80\x02cnumpy\nndarray\nN}X\x04\x00\x00\x00nameX\x01\x00\x00\x00xs\x86b.')
    with pytest.raises(UnsafePickleError, match='modify an allow-listed object'):
        safe_load(str(path))
    assert repr(safe_load.__globals__['_NDARRAY']) == '<numpy.ndarray>'
    # not a pickle at all, or cut short: one line naming the file
    path.write_bytes(b'garbage')
    with pytest.raises(PSSLError, match=r'x.pdparams: not a readable Paddle weights file'):
        safe_load(str(path))
    with pytest.raises(PSSLError, match='not found'):
        safe_load(str(tmp_path / 'absent.pdparams'))


def test_paddleseg_load_and_resume_refuse_a_crafted_file(tmp_path):
    from paddleseg.utils import utils
    path, marker = _evil_file(tmp_path, 'model.pdparams')
    model, optimizer = _model_and_optimizer()
    with pytest.raises(UnsafePickleError, match='posix.system|nt.system'):
        utils.load_entire_model(model, path)
    ckpt = tmp_path / 'iter_5'
    ckpt.mkdir()
    os.replace(path, ckpt / 'model.pdparams')
    paddle.save(optimizer.state_dict(), str(ckpt / 'model.pdopt'))
    with pytest.raises(UnsafePickleError):
        utils.resume(model, optimizer, str(ckpt))
    from paddle_pssl.utils.checkpoint import read_checkpoint
    with pytest.raises(UnsafePickleError):
        read_checkpoint(str(ckpt), need_name=True)
    assert not marker.exists()


def test_generator_classifier_weights_refuse_a_crafted_file(tmp_path):
    from paddle_pssl.pseudo_labels.generate import load_classifiers
    path, marker = _evil_file(tmp_path)
    for name in ('efficientnet_lite0', 'ResNet18'):
        with pytest.raises(PSSLError) as err:
            load_classifiers([{'name': name, 'weights': path}])
        message = str(err.value)
        assert '\n' not in message and path in message and '.system (not weights data)' in message
    assert not marker.exists()


def _cfg(tmp_path, dic):
    path = tmp_path / 'c.yml'
    path.write_text(yaml.safe_dump(dict({'_base_': PRETRAIN}, **dic)))
    return str(path)


def _train(tmp_path, *opts):
    env = dict(os.environ, SEG_HOME=str(tmp_path / 'seg_home'))
    env.pop('PSSL_DEBUG', None)   # it would print tracebacks
    return subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'train.py'),
                           '-c', _cfg(tmp_path, {}), '--iters', '1', '--opts', *opts],
                          capture_output=True, text=True, timeout=240, cwd=str(tmp_path), env=env)


def test_train_refuses_a_crafted_pretrained_file(tmp_path):
    path, marker = _evil_file(tmp_path)
    result = _train(tmp_path, f'model.pretrained={path}')
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert errors == [f'error: {path}: refused to load: the pickle asks for '
                      f'{os.system.__module__}.system (not weights data)']
    assert not marker.exists()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_train_without_the_network_gives_one_line_fast(tmp_path):
    url = f'http://127.0.0.1:{_free_port()}/resnet/model.pdparams'   # nobody listens there
    start = time.time()
    result = _train(tmp_path, f'model.backbone.pretrained={url}')
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f'error: model.backbone.pretrained: cannot download {url} ([Errno 111] Connection '
        'refused); point it at a local .pdparams file')
    assert time.time() - start < 120


@contextlib.contextmanager
def _http_server(directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def seg_home(tmp_path, monkeypatch):
    from paddleseg.utils import seg_env
    home = tmp_path / 'seg_home'
    for name in ('PRETRAINED_MODEL_HOME', 'TMP_HOME'):
        (home / name).mkdir(parents=True)
        monkeypatch.setattr(seg_env, name, str(home / name))
    return home / 'PRETRAINED_MODEL_HOME'


def test_pretrained_url_is_downloaded_into_paddleseg_cache_and_read_safely(tmp_path, seg_home):
    from paddleseg.utils import utils
    served = tmp_path / 'served'
    (served / 'lenet').mkdir(parents=True)
    source, _ = _model_and_optimizer()
    paddle.save(source.state_dict(), str(served / 'lenet' / 'model.pdparams'))
    # an archive, as upstream's configs name them (PaddleSeg unpacks it)
    with tarfile.open(served / 'PP_Lenet.tar.gz', 'w:gz') as tar:
        tar.add(served / 'lenet', arcname='PP_Lenet')
    _evil_file(served / 'lenet', 'evil.pdparams')
    with _http_server(served) as base:
        for url, cached in ((f'{base}/lenet/model.pdparams', 'lenet/model.pdparams'),
                            (f'{base}/PP_Lenet.tar.gz', 'PP_Lenet/model.pdparams')):
            target, _ = _model_and_optimizer()
            for value in target.state_dict().values():
                value.set_value(paddle.zeros_like(value))
            utils.load_pretrained_model(target, url)
            assert os.path.isfile(seg_home / cached)
            for (k, v), v2 in zip(source.state_dict().items(), target.state_dict().values()):
                assert np.array_equal(v.numpy(), v2.numpy()), k
        with pytest.raises(UnsafePickleError, match='evil.pdparams: refused to load'):
            utils.load_pretrained_model(target, f'{base}/lenet/evil.pdparams')
        with pytest.raises(PSSLError, match=r'cannot download .*/nothing/here.pdparams \(HTTP 404\)'):
            utils.load_pretrained_model(target, f'{base}/nothing/here.pdparams')
    assert not (served / 'lenet' / 'pwned').exists()
    assert not os.path.exists(seg_home / 'nothing' / 'here.pdparams')


def test_only_pretrained_keys_may_be_urls(tmp_path):
    from paddle_pssl.config import load_config
    cfg = load_config(_cfg(tmp_path, {'model': {'backbone': {
        'pretrained': 'https://bj.bcebos.com/paddleseg/dygraph/resnet50_vd_ssld_v2.tar.gz'}}}))
    assert cfg.dic['model']['backbone']['pretrained'].startswith('https://')   # not fetched yet
    with pytest.raises(PSSLError, match=r'train_dataset.pssl_root is a URL'):
        load_config(_cfg(tmp_path, {'train_dataset': {'pssl_root': 'https://example.invalid/d'}}))
