"""Reading VisualDL logs back (tests, benchmarks, notebooks)."""
import glob
import os


def read_scalars(log_dir, tag):
    """Values of scalar ``tag`` in every ``vdlrecords.*.log`` of ``log_dir``, by step."""
    from visualdl import LogReader
    values = []
    for path in sorted(glob.glob(os.path.join(log_dir, 'vdlrecords.*.log'))):
        reader = LogReader(file_path=path)
        if tag in reader.get_tags().get('scalar', []):
            values += [(r.id, r.value) for r in reader.get_data('scalar', tag)]
    return [v for _, v in sorted(values)]
