"""Run a documentation page's bash blocks as a reader would copy them.

The blocks of one page become one bash script (``set -euo pipefail``), run in a scratch
directory laid out like a checkout. bash does what a reader's shell does (variables, ``$(...)``,
globs, loops); the commands of salt (``salt``, ``to_onnx``, ``python -m salt...``, ...) are shell
functions that hand their expanded arguments back to this process through two FIFOs, where they
run in-process, with tiny sizes substituted, and their exit code goes back to bash. Saves
starting Python and importing torch and Lightning once per command.
"""

from __future__ import annotations

import os
import re
import runpy
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^[ \t]*```(\w+)[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
SHELL_LANGS = ("bash", "sh", "shell")
TOOLS = ("salt", "to_onnx", "get_onnx_metadata", "setup_muP", "download_S3", "python")
SHELL_WORDS = {"for", "do", "done", "if", "then", "fi", "export", "cd", "mkdir", "ls", "cat"}

PRELUDE = r"""
set -euo pipefail
__call() {
  printf '%s\0' "$@" > "$__DOCS_DIR/argv"
  echo call > "$__DOCS_DIR/req"
  local code
  read -r code < "$__DOCS_DIR/resp"
  return "$code"
}
trap 'echo "exit $?" > "$__DOCS_DIR/req"' EXIT
salt() { __call run salt "$@"; }
to_onnx() { __call run to_onnx "$@"; }
get_onnx_metadata() { __call run get_onnx_metadata "$@"; }
setup_muP() { __call run setup_muP "$@"; }
download_S3() { __call run download_S3 "$@"; }
python() { __call run python "$@"; }
__parse_only() { __call parse "$@"; }
"""


def shell_blocks(path: Path) -> list[str]:
    """The bash blocks of a Markdown file, dedented, in page order."""
    out = []
    for match in BLOCK.finditer(path.read_text()):
        if match.group(1) in SHELL_LANGS:
            lines = match.group(2).splitlines()
            indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
            out.append("\n".join(x[indent:] for x in lines))
    return out


def logical_lines(text: str) -> list[str]:
    """Lines with their backslash continuations joined."""
    return text.replace("\\\n", " ").splitlines()


def first_word(line: str) -> str:
    """The program a line runs, or ``""`` for an assignment (``RUN=$(ls ... | head -1)``)."""
    if re.match(r"^\w+=", line):
        return ""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return line.split()[0] if line.split() else ""
    return words[0] if words else ""


@dataclass
class Plan:
    """A page's script and what of it is not run (line -> reason)."""

    script: str
    not_run: dict[str, str] = field(default_factory=dict)
    parse_only: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def plan(path: Path, not_run: dict[str, str], parse_only: dict[str, str]) -> Plan:
    """The script of a page. ``not_run`` and ``parse_only`` map the start of a line to the reason
    it is not run: ``not_run`` lines are left out (installation, shell set-up), ``parse_only``
    lines have their arguments parsed by the real parsers instead of being run. Any other line
    runs; a line whose program the runner does not provide is listed in ``unknown``."""
    result = Plan(script=PRELUDE)
    for block in shell_blocks(path):
        for line in logical_lines(block):
            stripped = line.strip()
            match_nr = next((k for k in not_run if stripped.startswith(k)), None)
            match_po = next((k for k in parse_only if stripped.startswith(k)), None)
            if match_nr:
                result.not_run[stripped] = not_run[match_nr]
                result.script += f": not run: {shlex.quote(stripped)}\n"
                continue
            if match_po:
                result.parse_only[stripped] = parse_only[match_po]
                result.script += f"__parse_only {stripped}\n"
                continue
            word = first_word(stripped)
            if word and word not in TOOLS and word not in SHELL_WORDS:
                result.unknown.append(stripped)
            result.script += line + "\n"
    return result


Handler = Callable[[str, list[str]], int]


def run_script(
    script: str, cwd: Path, fifo_dir: Path, handler: Handler, env: dict[str, str]
) -> int:
    """Run ``script`` with bash in ``cwd``; every ``__call MODE ARGV...`` is answered by
    ``handler(MODE, ARGV)``. ``fifo_dir`` (new, outside ``cwd``) holds the pipes, the script and
    what bash printed (``shell.log``). Returns bash's exit code."""
    fifo_dir.mkdir()
    req, resp = fifo_dir / "req", fifo_dir / "resp"
    os.mkfifo(req)
    os.mkfifo(resp)
    (fifo_dir / "script.sh").write_text(script)
    log = (fifo_dir / "shell.log").open("w")
    proc = subprocess.Popen(
        ["bash", str(fifo_dir / "script.sh")],
        cwd=cwd,
        env={**env, "__DOCS_DIR": str(fifo_dir)},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        while True:
            with req.open() as pipe:
                message = pipe.read().strip()
            if message.startswith("exit"):
                proc.wait(timeout=30)
                return int(message.split()[1])
            words = (fifo_dir / "argv").read_bytes().split(b"\0")[:-1]
            mode, *argv = (w.decode() for w in words)
            code = handler(mode, argv)
            with resp.open("w") as pipe:
                pipe.write(f"{code}\n")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def shell_output(fifo_dir: Path) -> str:
    """What bash itself printed (its error messages: an unset variable, an empty glob)."""
    path = fifo_dir / "shell.log"
    return path.read_text() if path.is_file() else ""


# -- the commands, in-process -------------------------------------------------------------------
def exit_code(fn: Callable[[], object]) -> int:
    """Call a command's main; its return value or ``SystemExit`` as an exit code."""
    try:
        result = fn()
    except SystemExit as exit_:
        result = exit_.code
    if result is None:
        return 0
    return result if isinstance(result, int) else 1


def in_process(prog: str, args: list[str]) -> int:
    """Run one command of a page in this process."""
    if prog == "salt":
        from salt.cli.main import main

        return exit_code(lambda: main(args))
    if prog == "to_onnx":
        from salt.export.cli import to_onnx_main

        return exit_code(lambda: to_onnx_main(args))
    if prog == "get_onnx_metadata":
        from salt.export.cli import metadata_main

        return exit_code(lambda: metadata_main(args))
    if prog == "setup_muP":
        from salt.mup.cli import setup_mup_main

        return exit_code(lambda: setup_mup_main(args))
    if prog == "download_S3":
        from salt.s3.cli import main as download_main

        return exit_code(lambda: download_main(args))
    if prog == "python":
        return python_in_process(args)
    raise AssertionError(f"no in-process runner for {prog}")


def python_in_process(args: list[str]) -> int:
    """``python -m MODULE ...`` or ``python SCRIPT ...`` with ``sys.argv`` set as Python would."""
    saved = sys.argv

    def run() -> None:  # a script that ends without sys.exit exits with 0
        if args[:1] == ["-m"]:
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(args[0], run_name="__main__")

    try:
        sys.argv = [args[1], *args[2:]] if args[:1] == ["-m"] else list(args)
        return exit_code(run)
    finally:
        sys.argv = saved
