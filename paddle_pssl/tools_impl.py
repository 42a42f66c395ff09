"""What tools/train.py, val.py, predict.py and export.py do: parse PaddleSeg's
usual flags, build from the config with PaddleSeg's SegBuilder, and call
PaddleSeg's core (training through ``paddle_pssl.core.train``)."""
import os

from .utils.cli import ArgumentParser, add_config_args, add_save_dir_args, setup_runtime
from .utils.save_dir import claim_save_dir
from .config import load_config, load_yaml
from .datasets.target_labels import check_target_labels
from .utils.model_fit import load_trained, strict_model_path
from .utils.errors import PSSLError


def _builder(cfg, path=None):
    from .config.paddleseg import seg_builder
    return seg_builder(cfg, path)


def _check_model_path(path, flag):
    if path is None:
        raise PSSLError(f'{flag} is required')
    if not os.path.isfile(path):
        raise PSSLError(f'{path}: {flag} file not found')


def _check_counts(args, minimums):
    """Refuse integer flags below their minimum (PaddleSeg's loop divides by
    --save_interval and --log_iters, and asserts on --num_workers)."""
    for name, low in minimums.items():
        value = getattr(args, name)
        if value is not None and value < low:
            raise PSSLError(f'--{name} {value}: must be an integer >= {low}')


def train_main(argv=None):
    p = ArgumentParser('Train a segmentation model (PSSL pre-training or fine-tuning).')
    add_config_args(p, 'iters=1000 batch_size=2 lr_scheduler.learning_rate=0.005')
    p.add_argument('--iters', type=int, default=None)
    p.add_argument('--batch_size', type=int, default=None)
    p.add_argument('--learning_rate', type=float, default=None)
    p.add_argument('--save_dir', default='./output')
    p.add_argument('--save_interval', type=int, default=1000)
    p.add_argument('--log_iters', type=int, default=10)
    p.add_argument('--keep_checkpoint_max', type=int, default=5,
                   help='newest checkpoints kept in save_dir (0: all)')
    p.add_argument('--resume_model', default=None,
                   help='checkpoint directory to resume, e.g. output/iter_1000')
    add_save_dir_args(p)
    p.add_argument('--num_workers', type=int, default=0)
    p.add_argument('--do_eval', action='store_true')
    p.add_argument('--use_vdl', action='store_true', help='log to VisualDL in save_dir')
    p.add_argument('--use_ema', action='store_true')
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--precision', default='fp32', choices=['fp32', 'fp16'])
    p.add_argument('--amp_level', default='O1', choices=['O1', 'O2'])
    p.add_argument('--profiler_options', default=None)
    args = p.parse_args(argv)
    _check_counts(args, {'save_interval': 1, 'log_iters': 1, 'keep_checkpoint_max': 0,
                         'num_workers': 0})

    cfg = load_config(args.cfg, learning_rate=args.learning_rate,
                      batch_size=args.batch_size, iters=args.iters, opts=args.opts)
    seed = args.seed if args.seed is not None else cfg.dic.get('seed')
    setup_runtime(args.device, seed)
    if args.resume_model is not None and not os.path.isdir(args.resume_model):
        raise PSSLError(f'{args.resume_model}: --resume_model directory not found')
    with claim_save_dir(args.save_dir, args.resume_model, '--resume_model', args.overwrite,
                        args.break_lock):
        return _train(args, cfg, seed)


def _train(args, cfg, seed):
    from paddleseg.utils import utils
    utils.set_cv2_num_threads(args.num_workers)
    builder = _builder(cfg, args.cfg)
    utils.show_cfg_info(cfg)
    model = utils.convert_sync_batchnorm(builder.model, args.device)
    if 'mm_tuning' in cfg.dic:
        train_dataset = check_target_labels(builder.train_dataset)
        # Mix-and-Match tuning stage: a triplet loss on the backbone, not a segmentation loss
        from .mm_tuning.train import train_mm
        return train_mm(cfg, model, train_dataset, save_dir=args.save_dir, iters=args.iters,
                        batch_size=args.batch_size, learning_rate=args.learning_rate, seed=seed,
                        use_vdl=args.use_vdl, resume_model=args.resume_model,
                        log_iters=args.log_iters, save_interval=args.save_interval,
                        keep_checkpoint_max=args.keep_checkpoint_max)
    if args.do_eval and builder.val_dataset is None:
        raise PSSLError(f'{args.cfg}: --do_eval needs a val_dataset')
    # one look at the masks of both sets: classes that occur in neither are named
    train_dataset, val_dataset = check_target_labels(
        builder.train_dataset, builder.val_dataset if args.do_eval else None)
    from .core.pretraining_head import label_space_record, write_record
    record = label_space_record(builder, model, train_dataset)
    optimizer = builder.optimizer
    losses = builder.loss
    from .core import train
    train(model, train_dataset, val_dataset=val_dataset, optimizer=optimizer,
          save_dir=args.save_dir, iters=cfg.iters, batch_size=cfg.batch_size,
          resume_model=args.resume_model, save_interval=args.save_interval,
          log_iters=args.log_iters, num_workers=args.num_workers,
          use_vdl=args.use_vdl, use_ema=args.use_ema, losses=losses,
          keep_checkpoint_max=args.keep_checkpoint_max,
          test_config=cfg.test_config, precision=args.precision,
          amp_level=args.amp_level, profiler_options=args.profiler_options,
          to_static_training=cfg.to_static_training,
          on_nonfinite_loss=cfg.dic.get('on_nonfinite_loss') or 'stop',
          on_first_checkpoint=None if record is None else
          (lambda: write_record(record, args.save_dir)))


def val_main(argv=None):
    p = ArgumentParser('Evaluate a trained model on the config\'s val_dataset.')
    add_config_args(p, 'val_dataset.val_path=data/my_seg/test.txt')
    p.add_argument('--model_path', required=True, help='model.pdparams to evaluate')
    p.add_argument('--num_workers', type=int, default=0)
    p.add_argument('--batch_size', type=int, default=1,
                   help='images per forward pass, among consecutive images of one size (the '
                        'metrics equal those of one image at a time; aug_eval and is_slide use 1)')
    p.add_argument('--aug_eval', action='store_true')
    p.add_argument('--scales', nargs='+', type=float, default=[1.0])
    p.add_argument('--flip_horizontal', action='store_true')
    p.add_argument('--flip_vertical', action='store_true')
    p.add_argument('--is_slide', action='store_true')
    p.add_argument('--crop_size', nargs=2, type=int, default=None)
    p.add_argument('--stride', nargs=2, type=int, default=None)
    p.add_argument('--save_json', default=None, help='also write mIoU, Acc, class IoU, Kappa here')
    args = p.parse_args(argv)
    _check_counts(args, {'num_workers': 0, 'batch_size': 1})

    from .core.evaluate import evaluate
    _check_model_path(args.model_path, '--model_path')
    cfg = load_config(args.cfg, opts=args.opts)
    setup_runtime(args.device)
    builder = _builder(cfg, args.cfg)
    model = builder.model
    load_trained(model, args.model_path)   # every parameter, or one line: not a random head
    val_dataset = check_target_labels(builder.val_dataset)
    test_config = dict(cfg.test_config)
    test_config.update(aug_eval=args.aug_eval, scales=args.scales,
                       flip_horizontal=args.flip_horizontal,
                       flip_vertical=args.flip_vertical)
    if args.is_slide:
        test_config.update(is_slide=True, crop_size=args.crop_size, stride=args.stride)
    result = evaluate(model, val_dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                      **test_config)
    if args.save_json:
        from .utils.metrics_json import write_segmentation_metrics
        write_segmentation_metrics(args.save_json, result)   # NaN: null and its reason
    return result


def predict_main(argv=None):
    p = ArgumentParser('Predict images with a trained model; saves masks and overlays.')
    add_config_args(p, 'model.backbone.output_stride=8')
    p.add_argument('--model_path', required=True)
    p.add_argument('--image_path', required=True, help='an image, a folder or a list file')
    p.add_argument('--save_dir', default='./output/result')
    p.add_argument('--aug_pred', action='store_true')
    p.add_argument('--scales', nargs='+', type=float, default=[1.0])
    p.add_argument('--flip_horizontal', action='store_true')
    p.add_argument('--flip_vertical', action='store_true')
    args = p.parse_args(argv)

    import cv2
    from paddleseg.core import predict
    from paddleseg.transforms import Compose
    from paddleseg.utils import get_image_list
    _check_model_path(args.model_path, '--model_path')
    if not os.path.exists(args.image_path):
        raise PSSLError(f'{args.image_path}: --image_path not found')
    cfg = load_config(args.cfg, opts=args.opts)
    setup_runtime(args.device)
    builder = _builder(cfg, args.cfg)
    image_list, image_dir = get_image_list(args.image_path)
    if not image_list:
        raise PSSLError(f'{args.image_path}: no images found')

    class _Reading(Compose):
        # PaddleSeg's Compose calls .astype on cv2.imread's None for an
        # undecodable file (AttributeError); name the file instead.
        def __call__(self, data):
            if isinstance(data.get('img'), str):
                image = cv2.imread(data['img'], self.read_flag)
                if image is None:
                    raise PSSLError(f"{data['img']}: cannot decode image (corrupt or unsupported format)")
                data['img'] = image.astype('float32')
            return super().__call__(data)

    model = builder.model   # built (its own pretrained loaded by shape) before the strict load
    with strict_model_path(args.model_path):   # PaddleSeg's predict loads it: every parameter
        predict(model, model_path=args.model_path,
                transforms=_Reading(builder.val_transforms), image_list=image_list,
                image_dir=image_dir, save_dir=args.save_dir, aug_pred=args.aug_pred,
                scales=args.scales, flip_horizontal=args.flip_horizontal,
                flip_vertical=args.flip_vertical)


def export_main(argv=None):
    p = ArgumentParser('Export a trained model for Paddle Inference (static graph).')
    add_config_args(p, 'model.backbone.output_stride=8')
    p.add_argument('--model_path', required=True)
    p.add_argument('--save_dir', default='./output/inference_model')
    p.add_argument('--input_shape', nargs=4, type=int, default=None,
                   help='N C H W; default: dynamic [-1, 3, -1, -1]')
    p.add_argument('--output_op', default='argmax', choices=['argmax', 'softmax', 'none'])
    args = p.parse_args(argv)

    from .deploy.export import export_model
    _check_model_path(args.model_path, '--model_path')
    cfg = load_config(args.cfg, opts=args.opts)
    setup_runtime(args.device)
    return export_model(cfg, args.model_path, args.save_dir, args.input_shape,
                        args.output_op)


def generate_main(argv=None):
    p = ArgumentParser('Generate PSSL pseudo labels from explanations of classifiers.')
    add_config_args(p, 'source.image_root=data/my_classes output.pssl_root=output/my_labels')
    p.add_argument('--shard', default=None,
                   help='i/N: take every N-th image starting at i (default: the '
                        'launcher rank under paddle.distributed.launch, else 0/1)')
    p.add_argument('--max_images', type=int, default=None, help='stop once this many labels were written (whole batches)')
    p.add_argument('--no_progress', action='store_true')
    p.add_argument('--finalize_only', action='store_true',
                   help='only rewrite train.txt and manifest.json from the labels on disk '
                        '(after shards ran on several machines)')
    p.add_argument('--allow_mixed_settings', action='store_true',
                   help='add labels to a store whose labels were made with other settings '
                        '(classifiers and their weights, explainers, consensus, seed, source); '
                        'without it such a run is refused; the store\'s fingerprint.json and '
                        'manifest list every set of settings used')
    p.add_argument('--break_lock', action='store_true',
                   help='take over the shard\'s lock (<pssl_root>/locks/shard-i-of-N.lock) held '
                        'by a run on another host; a lock of this host whose process is gone is '
                        'taken over without it')
    args = p.parse_args(argv)
    _check_counts(args, {'max_images': 1})

    from .config import validate
    from .pseudo_labels.generate import PseudoLabelGenerator
    raw = load_yaml(args.cfg, args.opts)
    dic = validate('generator', raw, args.cfg)   # bad keys refused before any work
    shard = None
    if args.shard:
        try:
            index, count = (int(v) for v in args.shard.split('/'))
        except ValueError:
            raise PSSLError(f'--shard {args.shard!r}: expected i/N, e.g. 0/4')
        shard = (index, count)
    setup_runtime(args.device, raw.get('seed'))
    generator = PseudoLabelGenerator(dic, args.cfg, args.allow_mixed_settings, args.break_lock)
    if args.finalize_only:
        manifest = generator.finalize()
        print(f"{manifest['labels']} labels listed in {generator.root}/train.txt")
        return manifest
    counts = generator.run(shard=shard, progress=not args.no_progress, max_images=args.max_images)
    print(f"written {counts['written']}, already there {counts['existing']}, skipped "
          f"{counts['skipped']} (earlier runs: {counts['skipped_earlier']}), converted "
          f"{counts['converted']} in {counts['seconds']} s; labels in {generator.root}")
    return counts


def eval_labels_main(argv=None):
    import json
    p = ArgumentParser('mIoU and foreground IoU of a PSSL label store against ground-truth masks.')
    p.add_argument('--pssl_root', required=True)
    p.add_argument('--gt_root', required=True,
                   help='<gt_root>/<image path minus extension>.png, non-zero = object')
    p.add_argument('--save_json', default=None)
    args = p.parse_args(argv)
    from .pseudo_labels.evaluate import evaluate_store
    result = evaluate_store(args.pssl_root, args.gt_root)
    print(f"images {result['images']}  mIoU {result['miou']:.4f}  fg IoU {result['fg_iou']:.4f}"
          + (f"  (no GT for {len(result['missing_gt'])})" if result['missing_gt'] else ''))
    if result['bad_labels']:
        print(f"bad label files left out: {len(result['bad_labels'])}, first: "
              f"{next(iter(result['bad_labels'].values()))}")
    if args.save_json:
        from .utils.metrics_json import write_metrics_json
        write_metrics_json(args.save_json, json.loads(json.dumps(
            dict(result, per_class_iou={str(k): v for k, v in result['per_class_iou'].items()}))))
    return result
