"""Paddle Inference prediction with a model exported by ``tools/export.py``.

Reads ``deploy.yaml`` (model files, preprocessing transforms, output op),
preprocesses each image with those transforms exactly as the dynamic-graph
pipeline does (PaddleSeg's ``Compose``: BGR -> RGB, Normalize, ...), runs the
static graph on CPU (optionally with oneDNN/MKLDNN) or GPU, undoes any resize
or padding, and saves a pseudo-colour PNG mask per image.

    python tools/infer.py --model_dir output/inference_model --image_path demo.jpg
"""
import argparse
import os
import sys
import time

import numpy as np
import yaml

from ..utils.errors import PSSLError
from ..utils.io import atomic_write, read_image_bgr
from .paddle_compat import memory_optim_ok, set_onednn

DEPLOY_FILE = 'deploy.yaml'


def str2bool(value):
    """argparse type for TIPC's ``--flag=True|False``."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ('true', '1', 'yes', 'y'):
        return True
    if lowered in ('false', '0', 'no', 'n'):
        return False
    raise argparse.ArgumentTypeError(f'expected True or False, got {value!r}')


class DeployConfig:
    """``deploy.yaml`` as written by ``paddle_pssl.deploy.export.export_model``."""

    def __init__(self, path):
        if os.path.isdir(path):
            path = os.path.join(path, DEPLOY_FILE)
        if not os.path.isfile(path):
            raise PSSLError(f'{path}: deploy.yaml not found (export the model with '
                            'tools/export.py first)')
        with open(path) as f:
            try:
                dic = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise PSSLError(f'{path}: invalid YAML ({str(e).splitlines()[0]})')
        if 'Deploy' not in dic:
            raise PSSLError(f'{path}: no Deploy section')
        self.path = path
        self.dic = dic['Deploy']
        self.model_dir = os.path.dirname(os.path.abspath(path))
        for key in ('model', 'params'):
            if not os.path.isfile(os.path.join(self.model_dir, self.dic.get(key, ''))):
                raise PSSLError(f"{path}: {key} file {self.dic.get(key)!r} not found "
                                f'in {self.model_dir}')
        self.output_op = self.dic.get('output_op', 'argmax')
        if self.output_op not in ('argmax', 'softmax', 'none'):
            raise PSSLError(f'{path}: unknown output_op {self.output_op!r}')

    @property
    def model_file(self):
        return os.path.join(self.model_dir, self.dic['model'])

    @property
    def params_file(self):
        return os.path.join(self.model_dir, self.dic['params'])

    def build_transforms(self):
        """PaddleSeg's Compose over the listed transforms (registered by type)."""
        from paddleseg.cvlibs import manager
        from paddleseg.transforms import Compose
        transforms = []
        for item in self.dic.get('transforms') or [{'type': 'Normalize'}]:
            item = dict(item)
            name = item.pop('type', None)
            if name not in manager.TRANSFORMS.components_dict:
                raise PSSLError(f'{self.path}: transform type {name!r} is not registered')
            transforms.append(manager.TRANSFORMS[name](**item))
        return Compose(transforms)


class Predictor:
    """One Paddle Inference predictor for an exported model.

    ``preprocess(path)`` gives the float32 CHW input the model sees;
    ``run(batch)`` gives the raw output of the exported graph (int32 labels for
    output_op argmax, float maps otherwise); ``predict(paths)`` gives uint8
    label maps at each image's original size.
    """

    def __init__(self, model_dir, device='cpu', enable_mkldnn=False, cpu_threads=1,
                 use_trt=False, precision='fp32', ir_optim=True):
        from paddle import inference
        self.deploy = DeployConfig(model_dir)
        self.transforms = self.deploy.build_transforms()
        if precision != 'fp32':
            raise PSSLError(f'--precision {precision}: only fp32 is supported (fp16/int8 '
                            'need TensorRT or a quantised export, which this tool lacks)')
        if use_trt:
            raise PSSLError('--use_trt True: TensorRT is not supported by this tool')
        config = inference.Config(self.deploy.model_file, self.deploy.params_file)
        if device == 'gpu':
            import paddle
            if not paddle.is_compiled_with_cuda():
                raise PSSLError('--device gpu: this paddlepaddle build has no CUDA '
                                '(install paddlepaddle-gpu: see docs/install.md)')
            config.enable_use_gpu(100, 0)
        elif device == 'cpu':
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(int(cpu_threads))
            # Paddle 3.3: off unless asked, and refused for interpolating programs
            if set_onednn(config, self.deploy.model_file, enable_mkldnn):
                # shapes vary per image; bound oneDNN's per-shape cache
                config.set_mkldnn_cache_capacity(10)
        else:
            raise PSSLError(f'--device {device}: expected cpu or gpu')
        config.switch_ir_optim(ir_optim)
        if memory_optim_ok(self.deploy.model_file):   # fails on Paddle 3.3's .json programs
            config.enable_memory_optim()
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)
        self.input_name = self.predictor.get_input_names()[0]
        self.output_name = self.predictor.get_output_names()[0]

    def preprocess(self, image_path):
        """-> dict with 'img' (float32 CHW) and 'trans_info' (for undoing resizes)."""
        image = read_image_bgr(image_path).astype('float32')
        data = self.transforms({'img': image})
        data['img'] = np.ascontiguousarray(data['img'], dtype='float32')
        return data

    def run(self, batch):
        """Run the exported graph on a float32 NCHW batch; returns its output."""
        handle = self.predictor.get_input_handle(self.input_name)
        handle.reshape(batch.shape)
        handle.copy_from_cpu(np.ascontiguousarray(batch, dtype='float32'))
        self.predictor.run()
        return self.predictor.get_output_handle(self.output_name).copy_to_cpu()

    def to_label(self, output):
        """Exported output -> [N, H, W] class indices."""
        if self.deploy.output_op == 'argmax':
            return output.reshape(output.shape[0], *output.shape[-2:])
        return np.argmax(output, axis=1)

    @staticmethod
    def undo_transforms(label, trans_info):
        """Crop padding and resize back (nearest) as PaddleSeg's reverse_transform."""
        import cv2
        for mode, (height, width) in ((item[0], item[1]) for item in trans_info[::-1]):
            mode = mode[0] if isinstance(mode, (list, tuple)) else mode
            if mode == 'padding':
                label = label[:height, :width]
            elif mode == 'resize':
                label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
            else:
                raise PSSLError(f'unexpected transform record {mode!r}')
        return label

    def predict(self, image_paths, batch_size=1, timer=None):
        """Yield ``(path, uint8 label map at the original size)``; images in one
        batch must share a preprocessed shape, so a batch is split where it changes."""
        timer = timer if timer is not None else StageTimer()
        for start in range(0, len(image_paths), batch_size):
            chunk = image_paths[start:start + batch_size]
            tic = time.perf_counter()
            items = [self.preprocess(p) for p in chunk]
            timer.add('preprocess', time.perf_counter() - tic, len(chunk))
            for group in _same_shape_runs(list(zip(chunk, items))):
                tic = time.perf_counter()
                output = self.run(np.stack([d['img'] for _, d in group]))
                timer.add('inference', time.perf_counter() - tic, len(group))
                tic = time.perf_counter()
                labels = self.to_label(output)
                results = [(path, self.undo_transforms(labels[i].astype('uint8'),
                                                       d['trans_info']))
                           for i, (path, d) in enumerate(group)]
                timer.add('postprocess', time.perf_counter() - tic, len(group))
                yield from results


def _same_shape_runs(pairs):
    runs = []
    for pair in pairs:
        if runs and runs[-1][-1][1]['img'].shape == pair[1]['img'].shape:
            runs[-1].append(pair)
        else:
            runs.append([pair])
    return runs


class StageTimer:
    """Wall time per stage, for --benchmark and --save_log_path."""

    def __init__(self):
        self.seconds, self.images = {}, {}

    def add(self, stage, seconds, images):
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.images[stage] = self.images.get(stage, 0) + images

    def summary(self):
        parts = [f'{s}: {1000 * self.seconds[s] / max(self.images[s], 1):.2f} ms/img'
                 for s in ('preprocess', 'inference', 'postprocess') if s in self.seconds]
        return ', '.join(parts)


def save_pseudo_color(label, path):
    from paddleseg.utils.visualize import get_pseudo_color_map
    mask = get_pseudo_color_map(label)
    atomic_write(path, lambda tmp: mask.save(tmp, format='PNG'), suffix='.png')


def _mask_path(save_dir, image_path, image_dir):
    if image_dir and os.path.abspath(image_path).startswith(os.path.abspath(image_dir) + os.sep):
        rel = os.path.relpath(image_path, image_dir)
    else:
        rel = os.path.basename(image_path)
    return os.path.join(save_dir, os.path.splitext(rel)[0] + '.png')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Predict with an exported model through Paddle Inference; '
                    'saves pseudo-colour PNG masks.')
    p.add_argument('--model_dir', default=None,
                   help='folder with deploy.yaml, model.pdmodel (Paddle 3: model.json), '
                        'model.pdiparams')
    p.add_argument('--config', default=None,
                   help="path to deploy.yaml (PaddleSeg's flag; alternative to --model_dir)")
    p.add_argument('--image_path', required=True,
                   help='an image, a folder (searched recursively) or a list file '
                        '(first column: image path relative to the list)')
    p.add_argument('--save_dir', default='./output/infer_result')
    p.add_argument('--device', default='cpu', choices=['cpu', 'gpu'])
    p.add_argument('--enable_mkldnn', type=str2bool, default=False,
                   help='CPU only: use oneDNN (MKLDNN) kernels')
    p.add_argument('--cpu_threads', type=int, default=1)
    p.add_argument('--batch_size', type=int, default=1)
    p.add_argument('--use_trt', type=str2bool, default=False,
                   help='accepted for TIPC configs; only False is supported')
    p.add_argument('--precision', default='fp32', choices=['fp32', 'fp16', 'int8'],
                   help='only fp32 is supported')
    p.add_argument('--benchmark', type=str2bool, default=False,
                   help='print per-stage times (one warm-up batch is not timed)')
    p.add_argument('--save_log_path', default=None,
                   help='also write the run summary (settings, times) to this file')
    args = p.parse_args(argv)
    if (args.model_dir is None) == (args.config is None):
        p.error('give one of --model_dir or --config')
    if args.batch_size < 1 or args.cpu_threads < 1:
        p.error('--batch_size and --cpu_threads must be >= 1')
    return args


def infer_main(argv=None):
    args = parse_args(argv)
    from paddleseg.utils import get_image_list
    DeployConfig(args.model_dir or args.config)   # a bad model path fails first, and fast
    if not os.path.exists(args.image_path):
        raise PSSLError(f'{args.image_path}: --image_path not found')
    try:
        image_list, image_dir = get_image_list(args.image_path)
    except RuntimeError:
        raise PSSLError(f'{args.image_path}: no images found')
    predictor = Predictor(args.model_dir or args.config, device=args.device,
                          enable_mkldnn=args.enable_mkldnn, cpu_threads=args.cpu_threads,
                          use_trt=args.use_trt, precision=args.precision)
    if args.benchmark:  # warm-up: the first run builds oneDNN kernels / CUDA contexts
        for _ in predictor.predict(image_list[:args.batch_size], args.batch_size):
            pass
    from tqdm import tqdm
    timer = StageTimer()
    tic = time.perf_counter()
    count = 0
    for path, label in tqdm(predictor.predict(image_list, args.batch_size, timer),
                            total=len(image_list), unit='img', disable=len(image_list) < 50):
        save_pseudo_color(label, _mask_path(args.save_dir, path, image_dir))
        count += 1
    total = time.perf_counter() - tic
    lines = [f'model: {predictor.deploy.path} (output_op {predictor.deploy.output_op})',
             f'device: {args.device}, enable_mkldnn: {args.enable_mkldnn}, '
             f'cpu_threads: {args.cpu_threads}, batch_size: {args.batch_size}, '
             f'precision: {args.precision}',
             f'saved {count} masks to {args.save_dir} in {total:.2f} s']
    if args.benchmark:
        lines.append(f'benchmark: {timer.summary()}')
    print('\n'.join(lines))
    sys.stdout.flush()
    if args.save_log_path:
        from ..utils.io import atomic_write_text
        atomic_write_text(args.save_log_path, '\n'.join(lines) + '\n')
    return count
