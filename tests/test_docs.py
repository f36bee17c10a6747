"""The documentation stays true: every YAML snippet parses (salt fragments through salt's own
parser), every salt / to_onnx / setup_muP / download_S3 / get_onnx_metadata command line in a
bash block is parsed, every shipped config is mentioned, and ``mkdocs build --strict`` passes.
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
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOC_FILES = sorted(DOCS.rglob("*.md"))
BLOCK = re.compile(r"^[ \t]*```(\w+)[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
SALT_KEYS = {"name", "data", "model", "trainer", "seed_everything", "evaluation", "ckpt_path"}
DEFAULT_BASE = ["configs/GN2.yaml", "configs/GN2_demo.yaml"]
# a run directory's config.yaml stands in as this (what a demo run's resolved config is made of)
RUN_CONFIG = ["configs/GN2.yaml", "--config", "configs/GN2_demo.yaml"]
TOOLS = {"salt", "to_onnx", "setup_muP", "download_S3", "get_onnx_metadata"}


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


def named_files(tmp: Path) -> dict[str, Path]:
    """YAML blocks starting with ``# file: NAME`` are written to ``tmp/NAME`` for the commands."""
    files = {}
    for _, text in blocks("yaml"):
        first = text.splitlines()[0] if text.strip() else ""
        if first.startswith("# file:"):
            name = first.split(":", 1)[1].strip()
            files[name] = tmp / name
            files[name].write_text(text)
    return files


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


# -- bash --------------------------------------------------------------------------------------
def commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command line of a TOOLS program in the bash blocks."""
    out = []
    for where, text in blocks("bash"):
        text = text.replace("\\\n", " ")
        for line in text.splitlines():
            try:
                argv = shlex.split(line, comments=True)
            except ValueError:
                continue
            while argv and argv[0] in ("srun", "time"):
                argv = argv[1:]
            if "-m" in argv and "salt" in argv:  # torchrun ... -m salt fit ...
                argv = ["salt", *argv[argv.index("salt") + 1 :]]
            if argv and argv[0] in TOOLS:
                out.append((where, argv))
    return out


COMMANDS = commands()


def _is_var(value: str) -> bool:
    return value.startswith("$")


def _localise(argv: list[str], files: dict[str, Path], tmp: Path) -> list[str]:
    out = []
    for i, arg in enumerate(argv):
        if arg in files:
            arg = str(files[arg])
        elif _is_var(arg) and argv[i - 1] in ("--config", "-c") and arg.endswith("config.yaml"):
            out.extend(RUN_CONFIG)  # a run directory's config: the configs it is made of
            continue
        elif _is_var(arg):
            arg = re.sub(r"^\$\{?\w+\}?", str(tmp), arg)
        out.append(arg)
    return out


class _Parsed(Exception):
    """Raised by a stand-in for the real work: the arguments were accepted."""


@pytest.mark.parametrize(
    "where,argv", COMMANDS, ids=[f"{w}:{' '.join(a[:3])}" for w, a in COMMANDS]
)
def test_command(where: str, argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    files = named_files(tmp_path)
    prog, args = argv[0], _localise(argv[1:], files, tmp_path)
    if prog == "salt":
        sub = args[0]
        if sub in ("demo-data", "inspect", "calculate_quantiles", "migrate", "norm-dict"):
            import salt.cli.main

            assert f'"{sub}"' in Path(salt.cli.main.__file__).read_text()
            return
        if sub == "profile":  # its own options, then the arguments salt fit takes
            from salt.cli.profile import split_args

            _, salt_args = split_args(args[1:])
            salt_parse(["fit", *salt_args])
            return
        if sub in ("evaluate", "compare"):  # run on predictions files by test_evaluation_cli.py
            from salt.evaluation.cli import compare_parser, evaluate_parser

            (evaluate_parser if sub == "evaluate" else compare_parser)().parse_args(args[1:])
            return
        assert sub in ("fit", "test", "validate", "predict"), f"{where}: unknown subcommand {sub}"
        if any(a.startswith("s3://") for a in args):
            return  # a config fetched from S3: needs the bucket; the subcommand exists
        salt_parse(args)
    elif prog == "setup_muP":
        from salt.mup.cli import _parser

        _parser().parse_known_args(args)
    elif prog in ("to_onnx", "get_onnx_metadata"):
        import salt.export.athena
        import salt.export.metadata
        import salt.export.onnx_export
        from salt.export.cli import metadata_main, to_onnx_main

        def stop(*_a: object, **_k: object) -> None:
            raise _Parsed

        monkeypatch.setattr(salt.export.onnx_export, "export_onnx", stop)
        monkeypatch.setattr(salt.export.athena, "export_athena", stop)
        monkeypatch.setattr(salt.export.metadata, "metadata_props", stop)
        with pytest.raises(_Parsed):  # argparse errors raise SystemExit instead
            (to_onnx_main if prog == "to_onnx" else metadata_main)(args)
    elif prog == "download_S3":
        import salt.cli.errors
        from salt.s3.cli import download_s3_main

        monkeypatch.setattr(salt.cli.errors, "run_cli", lambda fn, argv: 0)
        assert download_s3_main(args) == 0
    scripts = tomllib_scripts()
    if prog != "salt" and prog not in scripts:
        assert prog == "setup_muP" and (ROOT / "setup_muP.py").is_file()


def tomllib_scripts() -> set[str]:
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def test_commands_found():
    progs = {a[0] for _, a in COMMANDS}
    assert progs >= TOOLS, f"no documented command for {TOOLS - progs}"


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


# -- documented fits, run for real ---------------------------------------------------------------
NEEDS_A_PREVIOUS_STEP = ("configs/GN2_muP.yaml",)  # base shapes from setup_muP first


def runnable_fits() -> list[tuple[str, list[str]]]:
    """The documented ``salt fit`` commands made only of shipped configs and options (no run
    directory, S3 bucket, user file, several devices or earlier step)."""
    out = []
    for where, argv in COMMANDS:
        if argv[:2] != ["salt", "fit"]:
            continue
        args = [a for a in argv[2:] if a != "--print_config"]
        configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--config", "-c")]
        if any(a.startswith("$") or "s3" in a or "devices" in a or "ddp" in a for a in args):
            continue
        if not all((ROOT / c).is_file() for c in configs) or set(configs) & set(
            NEEDS_A_PREVIOUS_STEP
        ):
            continue
        out.append((where, args))
    return out


RUNNABLE_FITS = runnable_fits()


@pytest.fixture(scope="module")
def demo_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory as the docs assume one: ``configs/`` and a small ``data/demo`` (with
    the process files of ``salt demo-data --processes``)."""
    from salt.data.demo import generate_demo_data
    from salt.data.demo_processes import write_process_files

    work = tmp_path_factory.mktemp("checkout")
    (work / "configs").symlink_to(ROOT / "configs")
    demo = work / "data" / "demo"
    generate_demo_data(demo, n_train=400, n_val=200, n_test=100, seed=3, block_size=400)
    write_process_files(demo, ("train", "val"))
    return work


@pytest.mark.slow
@pytest.mark.parametrize(
    "where,args", RUNNABLE_FITS, ids=[f"{w}:{' '.join(a[-3:])}" for w, a in RUNNABLE_FITS]
)
def test_documented_fit_trains_on_tiny_data(
    where: str, args: list[str], demo_checkout: Path, tmp_path: Path
):
    """As written (configs, fragments, options), in a fresh process, for two steps; configs that
    do not read the demo data get its files."""
    demo = demo_checkout / "data" / "demo"
    tiny = [
        "--data.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.max_steps=2",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path / 'logs'}",
    ]
    if "configs/GN2_demo.yaml" in args:
        tiny.append("--data.num_train=-1")  # all of the small demo file (docs may ask for more)
    else:
        tiny += [
            f"--data.train_file={demo / 'train.h5'}",
            f"--data.val_file={demo / 'val.h5'}",
            f"--data.test_file={demo / 'test.h5'}",
            f"--data.norm_dict={demo / 'norm_dict.yaml'}",
            f"--data.class_dict={demo / 'class_dict.yaml'}",
            "--data.num_train=128",
            "--data.num_val=64",
            "--data.batch_size=64",
        ]
    done = subprocess.run(
        [sys.executable, "-m", "salt", "fit", *args, *tiny],
        cwd=demo_checkout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{where}: salt fit {' '.join(args)}\n{done.stderr[-1500:]}"
    assert list((tmp_path / "logs").glob("*/ckpts/*.ckpt"))


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
