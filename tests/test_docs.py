"""README.md and docs/*.md name only what exists: the files and headings they
link, the configs and scripts they mention, and the flags their commands pass
to tools/*.py and ``python -m paddle_pssl ...`` (read from each tool's own
--help, run once per tool)."""
import functools
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ['README.md'] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))

FENCE = re.compile(r'^\s*(```|~~~)')
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
CONFIG = re.compile(r'(?<![\w./-])(configs/[\w./-]+?\.yml)(?![\w/])')
MENTIONED = re.compile(r'(?<![\w./-])((?:tools|benchmarks|scripts|tests|test_tipc|docs)/[\w./-]+?'
                       r'\.(?:py|sh|md|txt|yml|png))(?![\w/])')
TOOL = re.compile(r'(?<![\w./-])tools/(\w+)\.py\b')
MODULE = re.compile(r'\bpython\S*\s+-m\s+(paddle_pssl(?:\.\w+)*)\b')
END = {'|', '||', '&', '&&', ';', '>', '2>', '>>'}   # a command's flags end at these
CONFIG_KEYS = {'-o', '--opts'}                        # what follows are config keys, not flags


def _read(doc):
    with open(os.path.join(ROOT, doc), encoding='utf-8') as f:
        return f.read()


def _split(doc):
    """(code lines, prose text): code lines are (line number, text) with a
    trailing backslash joining the next line; prose keeps its line breaks and
    has the fenced lines blanked, so offsets still give line numbers."""
    code, prose, fenced, pending = [], [], False, None
    for number, line in enumerate(_read(doc).split('\n'), 1):
        if FENCE.match(line):
            fenced = not fenced
            prose.append('')
            continue
        if not fenced:
            prose.append(line)
            continue
        prose.append('')
        if pending:
            pending = (pending[0], pending[1] + ' ' + line.strip())
        else:
            pending = (number, line)
        if pending[1].rstrip().endswith('\\'):
            pending = (pending[0], pending[1].rstrip()[:-1])
        else:
            code.append(pending)
            pending = None
    if pending:
        code.append(pending)
    return code, '\n'.join(prose)


def _commands(doc):
    """(line number, text) of every place a command can be written: each
    code line, and each inline code span of the prose."""
    code, prose = _split(doc)
    spans = [(prose.count('\n', 0, m.start()) + 1, m.group(1).replace('\n', ' '))
             for m in re.finditer(r'`([^`]+)`', prose)]
    return code + spans


def _lines_of(doc, pattern):
    text = _read(doc)
    for m in pattern.finditer(text):
        yield text.count('\n', 0, m.start()) + 1, m


def _slug(heading):
    """The anchor GitHub gives a heading."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)   # a link's text
    text = text.replace('`', '').strip().lower()
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


@functools.lru_cache(maxsize=None)
def _anchors(path):
    code_free = _split(os.path.relpath(path, ROOT))[1]
    seen, out = {}, set()
    for m in re.finditer(r'^#{1,6}\s+(.+?)\s*#*\s*$', code_free, re.M):
        slug = _slug(m.group(1))
        out.add(slug if slug not in seen else f'{slug}-{seen[slug]}')
        seen[slug] = seen.get(slug, 0) + 1
    return out


@functools.lru_cache(maxsize=None)
def _accepted(command):
    """The option strings a tool's --help lists (``command`` is the argv
    before --help), or the reason there are none."""
    try:
        done = subprocess.run([sys.executable, *command, '--help'], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ, 'PYTHONPATH': ROOT})
    except subprocess.TimeoutExpired:
        return f"{' '.join(command)} --help took over 120 s"
    if done.returncode != 0:
        return f"{' '.join(command)} --help failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
    flags = set()
    for line in done.stdout.split('\n'):
        m = re.match(r'^\s{1,8}(-\S.*?)(?:\s{2,}|$)', line)
        if m:
            for option in m.group(1).split(', '):
                flags.add(re.split(r'[\s=]', option.strip())[0])
    return flags


def _flags_after(text):
    """The flags of the command that starts at ``text``, up to its end, a
    comment or --opts."""
    flags = []
    for token in text.split():
        if token in END or token.startswith('#'):
            break
        token = token.lstrip('[(').rstrip('])`,.;:')
        if token in CONFIG_KEYS:
            break
        if re.fullmatch(r'--?[A-Za-z][\w-]*(=.*)?', token):
            flags.append(token.split('=')[0])
    return flags


def _invocations(text):
    """(what, argv before --help, the text after it) of each tool called in ``text``."""
    for m in TOOL.finditer(text):
        path = f'tools/{m.group(1)}.py'
        yield path, [path], text[m.end():]
    for m in MODULE.finditer(text):
        rest = text[m.end():]
        if m.group(1) == 'paddle_pssl':
            tool = re.match(r'\s+(\w+)', rest)
            if tool:
                yield f'python -m paddle_pssl {tool.group(1)}', ['-m', 'paddle_pssl', tool.group(1)], \
                    rest[tool.end():]
        else:
            yield f'python -m {m.group(1)}', ['-m', m.group(1)], rest


def _module_exists(name):
    base = os.path.join(ROOT, *name.split('.'))
    return os.path.isfile(base + '.py') or os.path.isfile(os.path.join(base, '__init__.py'))


def _report(failures):
    assert not failures, f'{len(failures)} problem(s) in the docs:\n' + '\n'.join(failures)


def test_the_docs_are_found():
    assert 'README.md' in DOCS and 'docs/own_data.md' in DOCS and len(DOCS) > 8, DOCS


def test_every_linked_file_and_heading_exists():
    failures = []
    for doc in DOCS:
        for number, m in _lines_of(doc, LINK):
            target = m.group(1)
            if re.match(r'[a-z][\w+.-]*:', target):   # http:, https:, mailto:
                continue
            path, _, anchor = target.partition('#')
            full = os.path.normpath(os.path.join(ROOT, os.path.dirname(doc), path)) if path \
                else os.path.join(ROOT, doc)
            if not os.path.exists(full):
                failures.append(f'{doc}:{number}: link target {path} does not exist')
            elif anchor and full.endswith('.md') and anchor not in _anchors(full):
                failures.append(f'{doc}:{number}: {os.path.relpath(full, ROOT)} has no heading #{anchor}')
    _report(failures)


def test_every_config_and_script_mentioned_exists():
    failures = []
    for doc in DOCS:
        for pattern in (CONFIG, MENTIONED):
            for number, m in _lines_of(doc, pattern):
                if '...' not in m.group(1) and not os.path.exists(os.path.join(ROOT, m.group(1))):
                    failures.append(f'{doc}:{number}: {m.group(1)} does not exist')
    _report(failures)


def test_every_tool_flag_written_is_accepted_by_that_tool():
    failures, checked = [], 0
    for doc in DOCS:
        for number, text in _commands(doc):
            for what, command, rest in _invocations(text):
                if command[0] == '-m' and not _module_exists(command[1]):
                    failures.append(f'{doc}:{number}: {what}: no module {command[1]}')
                    continue
                if command[0] != '-m' and not os.path.isfile(os.path.join(ROOT, command[0])):
                    failures.append(f'{doc}:{number}: {what} does not exist')
                    continue
                accepted = _accepted(tuple(command))
                if isinstance(accepted, str):
                    failures.append(f'{doc}:{number}: {accepted}')
                    continue
                for flag in _flags_after(rest):
                    checked += 1
                    if flag not in accepted:
                        failures.append(f'{doc}:{number}: {what} has no flag {flag}')
    _report(failures)
    assert checked > 50, checked   # the parse found the docs' commands


@pytest.mark.parametrize('text, flags', [
    ('python tools/x.py -c a.yml --use_vdl \\', ['-c', '--use_vdl']),
    ('python tools/x.py -c ... --shard 3/8   # or --not_this', ['-c', '--shard']),
    ('python tools/x.py [--num 16] --opts a.b=1 --c=2', ['--num']),
    ('python tools/x.py --save_json=out.json -o x=1', ['--save_json']),
    ('python tools/x.py --iters -1 && python tools/y.py --z', ['--iters']),
])
def test_the_flag_parse(text, flags):
    assert _flags_after(text.split('x.py', 1)[1]) == flags


def test_the_help_parse_reads_argparse_option_strings():
    accepted = _accepted(('tools/train.py',))
    assert {'-c', '--config', '-o', '--opts', '--do_eval', '--resume_model', '-h'} <= accepted, accepted
    assert 'CFG' not in accepted and '--not_a_flag' not in accepted
