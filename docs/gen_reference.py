"""Generate the configuration reference from the code's typed signatures, so it never drifts.

Used two ways:

- as a MkDocs hook (``hooks: [docs/gen_reference.py]`` in ``mkdocs.yml``): the pages under
  ``reference/config/`` are added to the site at build time (nothing is written to ``docs/``),
  and ``benchmarks/README.md`` (with the figures next to it) becomes ``benchmarks/results.md``;
- as a script, ``python docs/gen_reference.py [OUT_DIR]``: writes the same pages as files
  (default ``site_reference/``), e.g. to read them without building the site.

Every ``class_path`` component (what ``salt.models``, ``salt.models.zoo``, ``salt.tasks``,
``salt.losses``, ``salt.training.schedulers`` and ``salt.callbacks.*`` export, plus
``SaltDataModule`` and ``SaltModule``) gets a table of its ``__init__`` arguments: name, type,
default and the description from the Google-style ``Args:`` section of its docstring.
"""

from __future__ import annotations

import html
import importlib
import inspect
import pkgutil
import re
import sys
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REF_DIR = "reference/config"

# (page stem, title, intro, modules whose exported classes are listed)
GROUPS: list[tuple[str, str, str, list[str]]] = [
    (
        "data",
        "Data (`data:`)",
        "The `data:` section configures `salt.data.SaltDataModule`; `data.config_S3` is the "
        "typed dict `salt.s3.config.S3Config`.",
        ["salt.data.datamodule:SaltDataModule", "salt.s3.config:S3Config"],
    ),
    (
        "module",
        "Lightning module (`model:`)",
        "The `model:` section configures `salt.training.module.SaltModule`; its `model:` key "
        "holds the network (`salt.models.SaltModel`). `evaluation:` options of `salt test` are "
        "`salt.cli.salt_cli.EvaluationOptions`.",
        ["salt.training.module:SaltModule", "salt.cli.salt_cli:EvaluationOptions"],
    ),
    (
        "models",
        "Building blocks (`salt.models`)",
        "Network building blocks, addressed from YAML as `salt.models.<Class>`.",
        ["salt.models"],
    ),
    (
        "zoo",
        "Model zoo (`salt.models.zoo`)",
        "Complete backbones from the literature, addressed as `salt.models.zoo.<Class>`.",
        ["salt.models.zoo"],
    ),
    (
        "tasks",
        "Tasks (`salt.tasks`)",
        "Task heads: what the network predicts and how each prediction is scored.",
        ["salt.tasks"],
    ),
    (
        "losses",
        "Losses (`salt.losses`)",
        "Losses usable as task losses, and loss regularisers such as DisCo.",
        ["salt.losses"],
    ),
    (
        "schedulers",
        "Learning-rate schedulers (`salt.training.schedulers`)",
        "Schedulers addressed from YAML as `model.lr_scheduler.class_path`. Any "
        "`torch.optim.lr_scheduler` class works too.",
        ["salt.training.schedulers"],
    ),
    (
        "callbacks",
        "Callbacks (`salt.callbacks`)",
        "Callbacks, added under `trainer.callbacks` (salt adds the ones it needs itself).",
        ["salt.callbacks.*"],
    ),
]

_ARGS_HEADERS = ("Args:", "Arguments:", "Parameters:", "Keys:", "Attributes:")


def _resolve(spec: str) -> list[tuple[str, type]]:
    """``module`` (its exported classes), ``module:Class`` or ``package.*`` (every submodule)."""
    if spec.endswith(".*"):
        package = importlib.import_module(spec[:-2])
        out: list[tuple[str, type]] = []
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            out += _resolve(f"{package.__name__}.{info.name}")
        return out
    if ":" in spec:
        module_name, name = spec.split(":")
        return [(f"{module_name}.{name}", getattr(importlib.import_module(module_name), name))]
    module = importlib.import_module(spec)
    names = getattr(module, "__all__", None)
    if names is None:  # only what the module defines or re-exports explicitly, no privates
        names = [n for n in vars(module) if not n.startswith("_")]
    out = []
    for name in sorted(names):
        obj = getattr(module, name)
        if not inspect.isclass(obj) or not obj.__module__.startswith("salt"):
            continue
        if spec.startswith("salt.callbacks."):
            if obj.__module__ != spec or issubclass(obj, BaseException):
                continue  # imports are documented where they are defined; errors are no config
        out.append((f"{spec}.{name}", obj))
    return out


def parse_args_section(doc: str | None) -> dict[str, str]:
    """The ``name: description`` entries of a Google-style ``Args:`` (or ``Keys:``) section."""
    if not doc:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, str] = {}
    inside, indent, current = False, None, None
    for line in lines:
        stripped = line.strip()
        if stripped in _ARGS_HEADERS:
            inside, indent, current = True, None, None
            continue
        if not inside:
            continue
        if not stripped:
            continue
        level = len(line) - len(line.lstrip())
        if level == 0:  # the next section
            inside = False
            continue
        if indent is None:
            indent = level
        match = re.match(r"^\**(\w+)\**\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
        if level == indent and match:
            current = match.group(1)
            out[current] = match.group(3)
        elif current is not None:
            out[current] += " " + stripped
    return out


def _rst_to_md(text: str) -> str:
    """``literal`` -> `literal`, :class:`~a.b.C` -> `C`, :class:`a.b.C` -> `a.b.C`."""
    text = re.sub(
        r":\w+:`~?([\w.]*?)([\w]+)`",
        lambda m: (
            f"`{m.group(2)}`"
            if m.group(0).split("`")[1].startswith("~")
            else f"`{m.group(1)}{m.group(2)}`"
        ),
        text,
    )
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _type_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, typing.ForwardRef):
        return annotation.__forward_arg__
    if isinstance(annotation, str):
        return annotation
    text = inspect.formatannotation(annotation)
    return text.replace("typing.", "")


def _code_with_pipes(match: re.Match[str]) -> str:
    """A code span holding ``|`` as HTML: in a table cell, Markdown would show the ``\\|``
    that escapes it (``int \\| None``)."""
    body = html.escape(match.group(1)).replace("|", "&#124;")
    return f"<code>{body}</code>"


def _cell(text: str) -> str:
    text = re.sub(r"`([^`]*\|[^`]*)`", _code_with_pipes, text.replace("\n", " "))
    return text.replace("|", "\\|")  # pipes outside code spans


def _summary(doc: str | None) -> str:
    if not doc:
        return ""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    first = paragraphs[0].strip()
    return " ".join(first.split())


def rows(cls: type) -> list[tuple[str, str, str, str]]:
    """(argument, type, default, description) for every configurable argument of ``cls``."""
    described: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a base class documents the arguments it handles
        if klass.__module__.startswith("salt"):
            described.update(parse_args_section(klass.__doc__))
            described.update(
                parse_args_section(
                    vars(klass).get("__init__", None).__doc__ if "__init__" in vars(klass) else None
                )
            )
    described = {name: _rst_to_md(text) for name, text in described.items()}
    if typing.is_typeddict(cls):
        hints = {}
        for klass in reversed(cls.__mro__):
            hints.update(getattr(klass, "__annotations__", {}))
        return [
            (
                name,
                _type_text(hint),
                "(optional)" if name in cls.__optional_keys__ else "required",
                described.get(name, ""),
            )
            for name, hint in hints.items()
        ]
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return []
    out = []
    for name, param in signature.parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is inspect.Parameter.empty:
            default = "required"
        else:
            default = f"`{param.default!r}`"
        type_text = _type_text(param.annotation)
        out.append(
            (f"`{name}`", f"`{type_text}`" if type_text else "", default, described.get(name, ""))
        )
    return out


def class_section(path: str, cls: type) -> str:
    lines = [f"## {cls.__name__}", "", f"`class_path: {path}`", ""]
    summary = _rst_to_md(_summary(cls.__doc__))
    if summary:
        lines += [summary, ""]
    table = rows(cls)
    if not table:
        lines += ["No arguments.", ""]
        return "\n".join(lines)
    lines += ["| argument | type | default | description |", "| --- | --- | --- | --- |"]
    for name, type_text, default, desc in table:
        name = name if name.startswith("`") else f"`{name}`"
        type_text = type_text if not type_text or type_text.startswith("`") else f"`{type_text}`"
        lines.append(f"| {_cell(name)} | {_cell(type_text)} | {_cell(default)} | {_cell(desc)} |")
    lines.append("")
    return "\n".join(lines)


def generate() -> dict[str, str]:
    """``{page path relative to docs/: markdown}`` for the configuration reference."""
    pages: dict[str, str] = {}
    index = [
        "# Configuration reference",
        "",
        "Generated at build time from the typed `__init__` signatures and `Args:` docstrings "
        "(`docs/gen_reference.py`), so it always matches the code. Every class below is "
        "addressed from YAML by its `class_path`; `salt fit --config ... --print_config` shows a "
        "complete resolved config.",
        "",
    ]
    for stem, title, intro, specs in GROUPS:
        classes: list[tuple[str, type]] = []
        for spec in specs:
            classes += _resolve(spec)
        body = [f"# {title}", "", intro, ""]
        body += [class_section(path, cls) for path, cls in classes]
        pages[f"{REF_DIR}/{stem}.md"] = "\n".join(body)
        names = ", ".join(f"`{cls.__name__}`" for _, cls in classes)
        index.append(f"- [{title}]({stem}.md): {names}")
    pages[f"{REF_DIR}/index.md"] = "\n".join(index) + "\n"
    return pages


# -- the benchmark results page: benchmarks/README.md, written by whoever runs the benchmarks ----
_IMAGE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp"}
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)([^)]*)\)")


def benchmark_page(root: Path = ROOT) -> tuple[str, list[Path]]:
    """The markdown of ``benchmarks/README.md`` and the image files it can link to.

    Links to images inside ``benchmarks/`` are kept (the images are published next to the page);
    links to other repository files become inline code, since they are not part of the site.
    """
    readme = root / "benchmarks" / "README.md"
    images = sorted(
        p for p in (root / "benchmarks").rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES
    )
    if not readme.is_file():
        text = (
            "# Benchmark results\n\n`benchmarks/README.md` has not been written yet: run the "
            "scripts described on the [benchmarks page](../benchmarks.md) and record the "
            "figures there; this page shows that file.\n"
        )
        return text, images
    base = readme.parent

    def fix(match: re.Match[str]) -> str:
        bang, label, target, rest = match.groups()
        if re.match(r"^[a-z]+://|^#|^mailto:", target):
            return match.group(0)
        path = (base / target.split("#")[0]).resolve()
        if path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file() and base in path.parents:
            return match.group(0)
        if bang:
            return f"`{target}`"
        return f"{label} (`{target}`)" if label and label != target else f"`{target}`"

    return _LINK.sub(fix, readme.read_text()), images


# -- MkDocs hook --------------------------------------------------------------------------------
def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages (and the benchmark figures) to the site."""
    from mkdocs.structure.files import File

    for path, text in generate().items():
        files.append(File.generated(config, path, content=text))
    text, images = benchmark_page()
    files.append(File.generated(config, "benchmarks/results.md", content=text))
    for image in images:
        rel = image.relative_to(ROOT).as_posix()
        if files.get_file_from_path(rel) is None:
            files.append(File.generated(config, rel, abs_src_path=str(image)))
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "site_reference")
    for path, text in generate().items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
