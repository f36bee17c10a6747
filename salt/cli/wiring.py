"""Fill in every size and name the framework can derive from the rest of the config.

Runs on the parsed config before anything is built, so ``--print_config`` shows the derived
values and a user never writes a number salt can compute (input sizes from variable lists, task
input sizes from the encoder/pooling output, class counts from class names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
from jsonargparse import Namespace

from salt.data.batch import SPECIAL_GROUPS
from salt.data.datamodule import canonical_variables
from salt.data.paths import resolve_files
from salt.errors import InputFileError
from salt.models.contracts import backbone_sizes, encoder_output_size
from salt.models.featurewise import wire_featurewise
from salt.utils.h5 import read_class_names


def _args(ns: Any) -> Any:
    """init_args of a class_path namespace (or the namespace itself)."""
    return ns.init_args if isinstance(ns, Namespace) and "init_args" in ns else ns


def _set_size(config: dict, key: str, value: int, where: str) -> dict:
    config = dict(config or {})
    given = config.get(key)
    if given is not None and int(given) != value:
        raise ValueError(f"{where}.{key}={given} but the config implies {value}; remove it")
    config[key] = value
    return config


def _class_names_from_file(
    data: Any, input_name: str, label: str, evaluating: bool
) -> list[str] | None:
    """From the training file; when evaluating (``salt test``/``predict``, maybe on another
    machine) from the test file if the training file is not at hand."""
    dataset = data.input_map.get(input_name, input_name) if data.input_map else input_name
    for key in ("train_file", "test_file"):
        spec = getattr(data, key)
        if spec is None:
            continue
        try:
            files = resolve_files(spec, key)
        except FileNotFoundError:
            if evaluating and key == "train_file" and data.test_file is not None:
                continue
            raise
        return _same_class_names(files, dataset, label, key)
    return None


def _same_class_names(files: list[Path], dataset: str, label: str, key: str) -> list[str] | None:
    """The class names stored in the first file, after checking that the file has the dataset
    and that no other file names the classes differently (the same label value would then
    mean another class)."""
    first = files[0]
    with h5py.File(first, "r") as h5:
        if dataset not in h5:  # said here, not as a missing class-names attribute
            raise InputFileError(
                f"data.{key}: '{first}' has no dataset '{dataset}' "
                f"(datasets: {', '.join(h5) or 'none'})"
            )
    names = read_class_names(first, dataset, label)
    for other in files[1:]:
        theirs = read_class_names(other, dataset, label)
        if names is not None and theirs is not None and theirs != names:
            raise InputFileError(
                f"data.{key}: '{other}' names the classes of '{dataset}.{label}' {theirs}, "
                f"but '{first}' names them {names}; the same label would mean different classes"
            )
    return names


def _wire_modules(
    net_args: Any, variables: dict[str, list[str]], glob: str, n_params: int
) -> tuple[int, int]:
    """Init nets -> encoder -> pooling: returns (constituent size, pooled size)."""
    n_jet = len(variables.get(glob, []))
    embed_sizes = set()
    for i, net in enumerate(net_args.init_nets):
        args = _args(net)
        name = args.input_name
        where = f"model.model.init_nets[{i}] ({name})"
        if name not in variables or name in SPECIAL_GROUPS:
            raise ValueError(f"{where}: input_name '{name}' has no entry in data.variables")
        attach = getattr(args, "attach_global", True) and name != glob
        size = len(variables[name]) + (n_jet if attach else 0) + n_params
        args.dense_config = _set_size(
            args.dense_config, "input_size", size, f"{where}.dense_config"
        )
        if args.dense_config.get("output_size") is None:
            raise ValueError(f"{where}.dense_config.output_size is required (the embedding size)")
        embed_sizes.add(int(args.dense_config["output_size"]))
    if len(embed_sizes) != 1:
        raise ValueError(f"model.model.init_nets: output_size differs ({sorted(embed_sizes)})")
    seq_size = embed_sizes.pop()

    encoder = net_args.encoder
    if encoder is not None:
        enc = _args(encoder)
        embed_dim = getattr(enc, "embed_dim", None)
        if embed_dim is not None and int(embed_dim) != seq_size:
            raise ValueError(
                f"model.model.encoder.embed_dim={embed_dim} but the init nets output {seq_size}"
            )
        seq_size = encoder_output_size(
            {"embed_dim": embed_dim or seq_size, "out_dim": getattr(enc, "out_dim", None)}
        )

    edges = getattr(net_args, "edge_features", None)
    if edges is not None:
        e = _args(edges)
        name = getattr(e, "input_name", "tracks")
        if name not in variables:
            raise ValueError(f"model.model.edge_features: input '{name}' is not in data.variables")
        e.variables = list(variables[name])
        heads = (getattr(_args(encoder), "mha_config", None) or {}).get("num_heads")
        if heads is not None:
            e.num_heads = int(heads)

    pool = _args(net_args.pool_net)
    if "input_size" in pool:
        given = pool.input_size
        if given is not None and int(given) != seq_size:
            raise ValueError(
                f"model.model.pool_net.input_size={given} but the encoder gives {seq_size}"
            )
        pool.input_size = seq_size
    pool_out = getattr(pool, "out_dim", None)  # pooling keeps its input width unless projected
    return seq_size, int(pool_out or seq_size)


def _wire_backbone(
    net_args: Any, variables: dict[str, list[str]], glob: str
) -> tuple[int | None, int]:
    """A complete backbone: tell it the inputs; it gives its output sizes itself
    (``config_sizes``, see :class:`salt.models.contracts.Backbone`)."""
    args = _args(net_args.backbone)
    if "variables" in args:
        args.variables = {k: list(v) for k, v in variables.items()}
    if "global_object" in args:
        args.global_object = glob
    sizes = backbone_sizes(net_args.backbone.class_path, args.as_dict(), "model.model.backbone")
    return sizes.constituent, sizes.jet


def derive_config(cfg: Namespace, need_files: bool = True, evaluating: bool = False) -> None:
    """Complete ``cfg`` (a subcommand's namespace) in place.

    With ``need_files=False`` (for ``--print_config``) values that need the training file, such
    as class names, are left unset when the file is not there; with ``evaluating`` they may
    come from the test file instead.
    """
    data, module = cfg.data, cfg.model
    variables = canonical_variables(data.variables)
    glob = data.global_object
    # the model carries normalisation and input wiring, always taken from the data config
    module.norm_dict = data.norm_dict
    module.class_dict = data.get("class_dict")
    module.variables = data.variables
    module.input_map = data.input_map
    module.global_object = glob
    net_args = _args(module.model)
    net_args.global_object = glob
    n_params = len(variables.get("PARAMETERS", []))
    net_args.num_parameters = n_params
    if getattr(net_args, "parameter_conditioning", "concat") == "film":
        n_params = 0  # parameters modulate the embeddings instead of entering the init nets
    if wire_featurewise(net_args, variables):
        n_params = 0  # feature-wise nets condition the init nets' inputs on the parameters
    n_global = len(variables.get("GLOBAL", []))

    seq_size: int | None
    if getattr(net_args, "backbone", None) is not None:
        seq_size, pooled = _wire_backbone(net_args, variables, glob)
    else:
        seq_size, pooled = _wire_modules(net_args, variables, glob, n_params)
    pooled += n_global

    for i, task in enumerate(net_args.tasks):
        args = _args(task)
        where = f"model.model.tasks[{i}] ({args.name})"
        jet_level = args.input_name == glob
        size = pooled if jet_level else seq_size
        if size is None:
            raise ValueError(
                f"{where}: the backbone gives no per-constituent outputs for "
                f"'{args.input_name}' (it is a jet-level network)"
            )
        config = _set_size(args.dense_config, "input_size", size, f"{where}.dense_config")
        if not jet_level:
            config = _set_size(config, "context_size", pooled, f"{where}.dense_config")
        args.dense_config = config
        if "class_names" in args and not args.class_names:
            if getattr(args, "label_map", None):
                raise ValueError(f"{where}: label_map needs class_names as well")
            try:
                names = _class_names_from_file(data, args.input_name, args.label, evaluating)
            except FileNotFoundError:
                if need_files:
                    raise
                continue
            if names is None:
                raise ValueError(
                    f"{where}: class_names not given and the training file has no "
                    f"'{args.label}' attribute on its '{args.input_name}' dataset"
                )
            args.class_names = names
