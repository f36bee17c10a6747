"""The documentation stays true: every YAML snippet parses (salt fragments through salt's own
parser), every page's bash blocks run as written on tiny data (tests/docs_runner.py; the few
lines that cannot run here are listed below with the reason and only parsed), every shipped
config is mentioned, and ``mkdocs build --strict`` passes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests import docs_runner

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOC_FILES = sorted(DOCS.rglob("*.md"))
BLOCK = docs_runner.BLOCK
SALT_KEYS = {"name", "data", "model", "trainer", "seed_everything", "evaluation", "ckpt_path"}
DEFAULT_BASE = ["configs/GN2.yaml", "configs/GN2_demo.yaml"]


def blocks(lang: str) -> list[tuple[str, str]]:
    """(``file:index``, text) of every fenced block of ``lang`` in the docs (dedented)."""
    out = []
    for path in DOC_FILES:
        for i, match in enumerate(BLOCK.finditer(path.read_text())):
            if match.group(1) == lang:
                lines = match.group(2).splitlines()
                indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
                text = "\n".join(x[indent:] for x in lines)
                out.append((f"{path.relative_to(DOCS)}:{i}", text))
    return out


def salt_parse(args: list[str]) -> str:
    """Run ``salt <args> --print_config`` in-process; returns the printed config."""
    from salt.cli.main import main

    out = io.StringIO()
    code: object = None
    with contextlib.redirect_stdout(out):
        try:
            code = main([*args, "--print_config"])
        except SystemExit as exit_:
            code = exit_.code
    assert code in (0, None), f"salt {' '.join(args)} --print_config exited with {code}"
    return out.getvalue()


# -- YAML --------------------------------------------------------------------------------------
YAML_BLOCKS = blocks("yaml")


@pytest.mark.parametrize("where,text", YAML_BLOCKS, ids=[w for w, _ in YAML_BLOCKS])
def test_yaml_block(where: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict), f"{where}: not a mapping"
    if not set(loaded) <= SALT_KEYS:
        return  # not a salt config (a norm dict, a metadata example, ...): parsing is enough
    first = text.splitlines()[0]
    if first.startswith("# file:"):
        return  # checked with the commands that use it
    base = DEFAULT_BASE
    if first.startswith("# on top of:"):
        base = first.split(":", 1)[1].split()
    snippet = tmp_path / "snippet.yaml"
    snippet.write_text(text)
    monkeypatch.chdir(ROOT)
    args = ["fit"]
    for config in [*base, str(snippet)]:
        args += ["--config", config]
    salt_parse(args)


# -- bash: every page's commands, run ------------------------------------------------------------
# Each page with bash blocks is run as one script in a scratch checkout (``configs/`` linked,
# ``benchmarks/`` copied, the page's ``# file:`` blocks written), in page order, by
# tests/docs_runner.py: bash expands the lines, salt's commands and the benchmark scripts run in
# this process with tiny sizes (a benchmark's printed table is checked). A page starts from a
# bare checkout, from the tiny demo data, or in the checkout of the page it builds on, after that
# page has run (as for a reader who follows the tutorials in order: run directories name their paths
# absolutely, so a checkout is never copied once it holds runs).
NAV = [m for m in re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)]
SHELL_PAGES = ["README.md"] + [
    page
    for page in NAV + sorted(str(p.relative_to(DOCS)) for p in DOC_FILES)
    if (DOCS / page).is_file() and docs_runner.shell_blocks(DOCS / page)
]
SHELL_PAGES = list(dict.fromkeys(SHELL_PAGES))
START = {
    "README.md": "bare",  # its first command writes the demo data
    "tutorials/gn2.md": "bare",
    "tutorials/onnx.md": "tutorials/gn2.md",  # a trained GN2_demo run
    "tutorials/finetune.md": "tutorials/gn2.md",
    "tutorials/model-comparison.md": "tutorials/gn2.md",  # its loop meets GN2_demo runs tested
    "tutorials/evaluation.md": "tutorials/model-comparison.md",  # tested GN2_demo, ParT_small
}  # any other page: "data" (the tiny demo data, as `make demo` leaves it)

INSTALL = "installs software (network access; the test environment is this installation)"
# lines of the pages that are not run, with the reason
NOT_RUN = {
    "README.md": {
        "make demo": "the full demo at its real size (minutes); its steps are the commands below",
        "make test": "runs this test suite",
        "python3 -m venv": INSTALL,
        "pip install": INSTALL,
    },
    "getting-started.md": {
        "make demo": "the full demo at its real size (minutes); its steps are in the tutorials",
        "make test": "runs this test suite",
        "python3 -m venv": INSTALL,
        "pip install": INSTALL,
        'python -c "import torch': "prints the installed torch and whether CUDA is visible",
    },
    "cli.md": {
        "pip install": INSTALL,
        'eval "$(register-python-argcomplete': "changes the reader's interactive shell "
        "(completion is tested by tests/test_cli_help.py)",
    },
    "tutorials/loggers.md": {
        "export COMET_API_KEY=...": "a placeholder for the reader's secret key; without it "
        "the Comet logger writes offline, as the next line then does here",
        "tensorboard --logdir": "starts a web server that runs until stopped",
    },
}
# lines whose arguments are parsed by the real parsers but which are not run, with the reason
S3_BUCKET = "needs a real bucket (tests/test_s3.py runs download_S3 and S3 run directories "
S3_BUCKET += "against a local S3 server)"
PARSE_ONLY = {
    "README.md": {"download_S3 ": S3_BUCKET},
    "distributed.md": {
        "salt fit --config configs/GN2.yaml --trainer.strategy ddp": "4 devices (GPUs); "
        "DDP on CPUs is run by tests/test_distributed.py",
        "srun ": "a SLURM job on 2 nodes",
        "torchrun ": "a multi-node torchrun launch",
    },
    "tutorials/s3.md": {
        "download_S3 ": S3_BUCKET,
        "salt test --config s3://": S3_BUCKET,
    },
}


def page_table(table: dict[str, dict[str, str]], page: str) -> dict[str, str]:
    return table.get(page, {})


TINY_FIT = [
    "--data.num_workers=0",
    "--data.num_train=100",  # one epoch of two steps, then validation and its checkpoint
    "--data.num_val=50",
    "--data.batch_size=50",
    "--trainer.max_epochs=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
]
TINY_DEMO = ["--train", "400", "--val", "200", "--test", "100", "--block-size", "400"]
# the benchmark scripts at a few seconds each (their options; the last one wins)
TINY_BENCHMARKS = {
    "benchmarks/loader.py": ["--jets", "400", "--workers", "0", "--batch_size", "100"],
    "benchmarks/train.py": ["--steps", "1", "--warmup", "0", "--batch_size", "50"],
    "benchmarks/test.py": ["--num_test", "100", "--batch_size", "50"],
    "benchmarks/onnx.py": [
        *("--threads", "1", "--jets", "3", "--batch", "50", "--repeats", "1"),
        *("--num_train", "100", "--num_val", "100", "--parity_jets", "0"),
    ],
    "benchmarks/disco_sculpting.py": [
        *("--num_train", "100", "--num_val", "50", "--epochs", "1", "--batch_size", "50"),
        *("--samples", "test", "--in_process"),
    ],
    "benchmarks/startup.py": ["--repeat", "1"],
}
# torch.compile: dynamo's graph capture of the demo GN2 only (inductor: tens of seconds a config)
TINY_COMPILE = ["--configs", "demo", "--backend", "eager"]
# what each benchmark prints: its table's rows, with figures
NUMBER = r"[\d,]+(\.\d+)?"
BENCHMARK_OUTPUT = {
    "benchmarks/loader.py": [
        rf"raw h5py, 100-row reads +{NUMBER} +1\.00",
        rf"salt loader, 0 worker\(s\), next epoch +{NUMBER} +{NUMBER}",
    ],
    "benchmarks/train.py": [rf"demo +eager +{NUMBER} +{NUMBER} +{NUMBER}%"],
    "benchmarks/test.py": [
        rf"forward pass only +{NUMBER} +1\.00",
        rf"salt test \(whole command\) +{NUMBER} +{NUMBER}",
    ],
    "benchmarks/onnx.py": [
        rf"pytorch eager +{NUMBER} ms +1\.00x +{NUMBER} +1\.00x",
        rf"onnxruntime.* {NUMBER} ms +{NUMBER}x +{NUMBER} +{NUMBER}x",
    ],
    "benchmarks/disco_sculpting.py": [
        rf"\| {model} \| {wp}% \| {NUMBER} \| {NUMBER} \| .* \| \d+ / \d+ \|"
        for model in ("without DisCo", "with DisCo")
        for wp in (70, 85)
    ],
    "benchmarks/startup.py": [
        rf"\| {re.escape(label)}[^|]*\| {NUMBER} \| {NUMBER} \| {NUMBER} \|"
        for label in ("salt --help", "salt inspect train.h5", "config error")
    ],
    "benchmarks/vs_salt_ml.py": [r"usage: vs_salt_ml\.py"],
}


def tiny(prog: str, args: list[str]) -> list[str]:
    """The command with sizes for tests: the page's options, then ours (the last one wins)."""
    if prog == "setup_muP" and "--steps" in args:  # the coordinate check: steps per width
        out = list(args)
        out[out.index("--steps") + 1] = "1"
        return out
    if prog == "python" and args and args[0] in TINY_BENCHMARKS and "--help" not in args:
        compile_ = TINY_COMPILE if "--compile" in args else []
        return [*args, *TINY_BENCHMARKS[args[0]], *compile_]
    if prog != "salt" or not args:
        return args
    if args[0] == "fit" and "--print_config" not in args and "--help" not in args:
        logger = any("logger" in a or "tensorboard" in a for a in args)
        return [*args, *TINY_FIT, *([] if logger else ["--trainer.logger=false"])]
    if args[0] == "demo-data":
        return [*args, *TINY_DEMO]
    if args[0] == "profile":
        out = list(args)
        if "--steps" in out and int(out[out.index("--steps") + 1]) > 1:
            out[out.index("--steps") + 1] = "1"
        return [*out, "--batch_size", "50"]
    return args


def parse_only(argv: list[str]) -> None:
    """The arguments of a line that is not run, checked by the parser of its program."""
    from unittest import mock

    while argv and argv[0] in ("srun", "torchrun"):
        argv = argv[argv.index("salt") :] if argv[0] == "torchrun" else argv[1:]
    prog, args = argv[0], argv[1:]
    if prog == "download_S3":
        import salt.cli.errors
        from salt.s3.cli import download_s3_main

        with mock.patch.object(salt.cli.errors, "run_cli", lambda fn, argv: 0):
            assert download_s3_main(args) == 0
        return
    assert prog == "salt" and args[0] in ("fit", "test", "validate", "predict"), argv
    if any(a.startswith("s3://") for a in args):
        return  # a config fetched from S3: needs the bucket; the subcommand exists
    salt_parse(args)


@dataclass
class PageRun:
    code: int
    checkout: Path
    runner: Path
    calls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    printed: list[tuple[list[str], str]] = field(default_factory=list)  # python: argv, stdout

    def report(self) -> str:
        shell = docs_runner.shell_output(self.runner)
        out = self.printed[-1][1][-3000:] if self.printed else ""
        lines = ["calls:", *self.calls[-5:], "errors:", *self.errors, "bash:", shell]
        return "\n".join([*lines, "last python output:", out])


class Checkouts:
    """Finished checkouts, built once per test process: bare, with data, after each page."""

    def __init__(self, base: Path):
        self.base = base
        self.states: dict[str, Path] = {}
        self.runs: dict[str, PageRun] = {}

    def state(self, name: str) -> Path:
        if name not in self.states:
            self.states[name] = self._build(name)
        return self.states[name]

    def _build(self, name: str) -> Path:
        if name == "bare":
            work = self.base / "bare"
            work.mkdir()
            (work / "configs").symlink_to(ROOT / "configs")
            # copied, not linked: a script finds configs and data next to itself, in the checkout
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / "benchmarks", work / "benchmarks", ignore=ignore)
            return work
        if name == "data":
            from salt.data.demo import generate_demo_data

            work = self.copy("bare", "data")
            generate_demo_data(
                work / "data" / "demo", n_train=400, n_val=200, n_test=100, seed=3, block_size=400
            )
            return work
        run = self.run_page(name)
        assert run.code == 0, f"{name}, which this page builds on, failed:\n{run.report()}"
        return run.checkout

    def copy(self, state: str, name: str) -> Path:
        work = self.base / name.replace("/", "__")
        shutil.copytree(self.state(state), work, symlinks=True)
        return work

    def run_page(self, page: str) -> PageRun:
        if page not in self.runs:
            self.runs[page] = self._run(page)
        return self.runs[page]

    def _run(self, page: str) -> PageRun:
        path = ROOT / page if page == "README.md" else DOCS / page
        start = START.get(page, "data")  # a page it builds on: in that page's checkout
        work = self.state(start) if start in SHELL_PAGES else self.copy(start, page)
        for name, text in page_files(path).items():
            (work / name).write_text(text)
        plan = docs_runner.plan(path, page_table(NOT_RUN, page), page_table(PARSE_ONLY, page))
        assert not plan.unknown, f"{page}: lines the runner does not run: {plan.unknown}"
        runner = self.base / f"{page.replace('/', '__')}.runner"
        run = PageRun(code=-1, checkout=work, runner=runner)

        def handler(mode: str, argv: list[str]) -> int:
            run.calls.append(f"{mode}: {shlex.join(argv)}")
            cwd = os.getcwd()
            os.chdir(work)
            secrets = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("COMET_")}
            try:
                if mode == "parse":
                    parse_only(argv)
                    return 0
                if argv[0] == "python":  # its output is checked; its settings are undone
                    out = io.StringIO()
                    with contextlib.redirect_stdout(out), script_state():
                        code = docs_runner.in_process("python", tiny("python", argv[1:]))
                    run.printed.append((argv, out.getvalue()))
                else:
                    code = docs_runner.in_process(argv[0], tiny(argv[0], argv[1:]))
                if code:
                    run.errors.append(f"exit {code}: {shlex.join(argv)}")
                return code
            except Exception:  # a crash, reported with the line that raised it
                run.errors.append(f"{shlex.join(argv)}: {traceback.format_exc()[-3000:]}")
                return 1
            finally:
                os.chdir(cwd)
                os.environ.update(secrets)

        # as for a reader without a Comet key: the Comet logger writes offline
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
        run.code = docs_runner.run_script(plan.script, work, run.runner, handler, env)
        return run


@contextlib.contextmanager
def script_state() -> Iterator[None]:
    """Undo what a script run in this process sets for the whole process (torch's threads, the
    levels of salt's and Lightning's loggers); its temporary directories are removed after it
    (they go in a new one, with a short path: sockets are made there)."""
    import logging

    import torch

    names = ("salt", "lightning.pytorch", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    threads, saved_tmp = torch.get_num_threads(), tempfile.tempdir
    tmp = tempfile.mkdtemp(prefix="salt-docs-")
    tempfile.tempdir = tmp
    try:
        yield
    finally:
        tempfile.tempdir = saved_tmp
        shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(threads)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def benchmark_problems(page: str, run: PageRun) -> list[str]:
    """The page's benchmark lines that were not run or did not print their table."""
    path = ROOT / page if page == "README.md" else DOCS / page
    text = "\n".join(docs_runner.shell_blocks(path))
    wanted = re.findall(r"^python (benchmarks/\w+\.py)", text, re.M)
    ran = [argv[1] for argv, _ in run.printed if argv[1:2] and argv[1] in BENCHMARK_OUTPUT]
    problems = [f"never run: {s}" for s in wanted if s not in ran]
    for argv, out in run.printed:
        script = argv[1] if len(argv) > 1 else ""
        patterns = list(BENCHMARK_OUTPUT.get(script, []))
        if script == "benchmarks/train.py" and "--compile" in argv:
            patterns.append(rf"demo +compiled +{NUMBER}")
        missing = [p for p in patterns if not re.search(p, out, re.M)]
        if missing:
            problems.append(f"{shlex.join(argv)}: no line matching {missing}:\n{out[-2000:]}")
    return problems


def page_files(path: Path) -> dict[str, str]:
    """The page's YAML blocks that start with ``# file: NAME``."""
    out = {}
    for match in BLOCK.finditer(path.read_text()):
        text = match.group(2)
        first = text.strip().splitlines()[0] if text.strip() else ""
        if match.group(1) == "yaml" and first.startswith("# file:"):
            out[first.split(":", 1)[1].strip()] = text
    return out


@pytest.fixture(scope="session")
def checkouts(tmp_path_factory: pytest.TempPathFactory) -> Checkouts:
    return Checkouts(tmp_path_factory.mktemp("docs_checkouts"))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", SHELL_PAGES)
def test_page_commands_run(page: str, checkouts: Checkouts):
    """Every line of the page's bash blocks, in order, as a reader would paste them."""
    run = checkouts.run_page(page)
    assert run.code == 0, f"{page} failed:\n{run.report()}"
    problems = benchmark_problems(page, run)
    assert not problems, "\n".join(problems)


def test_every_tool_is_run_somewhere():
    """Each of salt's programs and subcommands appears in a line that is run, not only parsed."""
    words = set()
    for page in SHELL_PAGES:
        path = ROOT / page if page == "README.md" else DOCS / page
        skipped = [*page_table(NOT_RUN, page), *page_table(PARSE_ONLY, page)]
        for block in docs_runner.shell_blocks(path):
            for line in docs_runner.logical_lines(block):
                if any(line.strip().startswith(s) for s in skipped):
                    continue
                for name in ("to_onnx", "get_onnx_metadata", "setup_muP", "download_S3"):
                    if re.search(rf"(^|\s){name}\s", line + " "):
                        words.add(name)
                words.update(re.findall(r"(?:^|\s)salt ([\w-]+)", line))
    import salt.cli.main

    wanted = {*salt.cli.main.LIGHTNING_SUBCOMMANDS, *salt.cli.main.COMMANDS}
    wanted |= {"to_onnx", "get_onnx_metadata", "setup_muP"}
    wanted -= {"validate", "download_S3"}  # validate: no page shows it; S3: see PARSE_ONLY
    assert wanted <= words, f"never run by a documented command: {sorted(wanted - words)}"


# -- coverage of the shipped configs ------------------------------------------------------------
def test_every_config_is_documented():
    text = "\n".join(p.read_text() for p in DOC_FILES)
    configs = sorted((ROOT / "configs").rglob("*.yaml"))
    missing = [
        str(c.relative_to(ROOT))
        for c in configs
        if str(c.relative_to(ROOT / "configs")) not in text
    ]
    assert not missing, f"configs not mentioned in docs/: {missing}"


# -- the site -----------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_mkdocs_build_strict(tmp_path: Path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "config" / "models" / "index.html").is_file()


def test_reference_tables_show_union_types_without_backslashes():
    """``int | None`` in a table cell: as HTML code, not a code span that shows ``\\|``."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_reference
    finally:
        sys.path.remove(str(ROOT / "docs"))
    pages = gen_reference.generate()
    text = "\n".join(pages.values())
    assert "<code>" in text and "&#124;" in text
    assert not re.search(r"`[^`\n]*\\\|[^`\n]*`", text), "a code span with an escaped pipe"
