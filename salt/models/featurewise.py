"""Feature-wise conditioning: a learned per-feature scale and shift computed from per-jet inputs.

A parametrised tagger (e.g. conditioned on a signal mass hypothesis in ``PARAMETERS``) can take
the condition as extra input features, or let it modulate the network's features directly:
small networks turn the condition ``c`` of each jet into a scale ``s(c)`` and a shift ``b(c)``
per feature, and the features of all constituents of that jet become ``x * s(c) + b(c)``
(FiLM, Perez et al. 2018). This module places such transformations where salt-ml's
``featurewise_nets`` put them:

- ``input``: on each init net's input features (constituent and jet variables), before the
  embedding; the parameters then no longer enter the init nets as extra features;
- ``encoder``: on the constituents entering every encoder layer (one transformation per layer);
- ``global``: on the encoded constituents, before pooling and the constituent tasks.

The condition is ``PARAMETERS`` by default or, with ``condition_on``, another per-jet input
such as the jet variables. Sizes are derived: the condition width from ``data.variables``, the
number of features from the place.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypedDict, cast

from torch import Tensor, nn

from salt.data.batch import Inputs
from salt.models.configs import DenseConfig
from salt.models.contracts import Encoder
from salt.models.dense import dense_from_config

LAYERS = ("input", "encoder", "global")
PARAMETERS = "PARAMETERS"


class FeaturewiseConfig(TypedDict, total=False):
    """One feature-wise transformation of :class:`~salt.models.SaltModel` (``featurewise_nets``).

    Keys:
        layer: where it acts: ``input``, ``encoder`` or ``global`` (see the module docstring).
        dense_config_scale: network of the per-feature scale (sizes derived); omitted: no scale.
        dense_config_bias: network of the per-feature shift (sizes derived); omitted: no shift.
        apply_norm: a LayerNorm over the features after the transformation.
        condition_on: the per-jet input the nets read: ``PARAMETERS`` (default) or the jet
            object's name (its normalised variables).
        condition_size: width of the condition; set by salt from ``data.variables``.
    """

    layer: str
    dense_config_scale: DenseConfig
    dense_config_bias: DenseConfig
    apply_norm: bool
    condition_on: str
    condition_size: int


def _sized(config: DenseConfig, input_size: int, output_size: int, where: str) -> DenseConfig:
    """``config`` with its sizes; explicit sizes must agree with the derived ones."""
    for key, value in (("input_size", input_size), ("output_size", output_size)):
        given = config.get(key)
        if given is not None and int(given) != value:  # type: ignore[call-overload]
            raise ValueError(f"{where}.{key}={given} but the model implies {value}; remove it")
    return {**config, "input_size": input_size, "output_size": output_size}


class FeaturewiseTransformation(nn.Module):
    """``x * scale(c) + shift(c)`` per feature (optionally normalised), ``c`` one row per jet.

    Args:
        condition_size: width of the condition ``c``.
        num_features: number of features of ``x`` (its last dimension).
        dense_config_scale: the scale network (sizes derived); None: no scale.
        dense_config_bias: the shift network (sizes derived); None: no shift.
        apply_norm: a LayerNorm (with its own scale and shift) after the transformation.
        where: the config key, for errors.
    """

    def __init__(
        self,
        condition_size: int,
        num_features: int,
        dense_config_scale: DenseConfig | None = None,
        dense_config_bias: DenseConfig | None = None,
        apply_norm: bool = False,
        where: str = "featurewise_nets",
    ) -> None:
        """Build the scale and shift networks."""
        super().__init__()
        if dense_config_scale is None and dense_config_bias is None:
            raise ValueError(f"{where}: give dense_config_scale, dense_config_bias or both")
        if condition_size <= 0:
            raise ValueError(f"{where}: the condition has no variables (condition_size=0)")
        self.scale_net = None
        self.bias_net = None
        if dense_config_scale is not None:
            config = _sized(
                dense_config_scale, condition_size, num_features, f"{where}.dense_config_scale"
            )
            self.scale_net = dense_from_config(config, f"{where}.dense_config_scale")
        if dense_config_bias is not None:
            config = _sized(
                dense_config_bias, condition_size, num_features, f"{where}.dense_config_bias"
            )
            self.bias_net = dense_from_config(config, f"{where}.dense_config_bias")
        self.norm = nn.LayerNorm(num_features) if apply_norm else None
        self.num_features = num_features

    def modulation(self, condition: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """The per-jet ``(scale, shift)``, each (B, num_features) or None."""
        scale = None if self.scale_net is None else self.scale_net(condition)
        shift = None if self.bias_net is None else self.bias_net(condition)
        return scale, shift

    def modulate(
        self,
        x: Tensor,
        scale: Tensor | None,
        shift: Tensor | None,
        jet: Tensor | None = None,
    ) -> Tensor:
        """Transform x: (B, L, F) with per-jet rows, or (N, F) with ``jet`` (N,) naming the row
        of each entry (constituents packed without padding)."""
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"featurewise: expected {self.num_features} features, got {x.shape[-1]}"
            )
        if scale is not None:
            x = x * (scale[jet] if jet is not None else scale.unsqueeze(-2))
        if shift is not None:
            x = x + (shift[jet] if jet is not None else shift.unsqueeze(-2))
        return x if self.norm is None else self.norm(x)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        """Transform x (B, L, F) with the condition (B, condition_size)."""
        scale, shift = self.modulation(condition)
        return self.modulate(x, scale, shift)


def _transformation(
    config: FeaturewiseConfig, condition_size: int, num_features: int, where: str
) -> FeaturewiseTransformation:
    return FeaturewiseTransformation(
        condition_size,
        num_features,
        config.get("dense_config_scale"),
        config.get("dense_config_bias"),
        bool(config.get("apply_norm", False)),
        where,
    )


def encoder_layers(encoder: nn.Module | None) -> nn.ModuleList | None:
    """The layer stack of an encoder (ours, or salt-ml's ``Transformer`` built on it)."""
    for candidate in (encoder, getattr(encoder, "encoder", None)):
        layers = getattr(candidate, "layers", None)
        if isinstance(layers, nn.ModuleList) and len(layers):
            return layers
    return None


class FeaturewiseNets(nn.Module):
    """Every feature-wise transformation of a model, at the places its configs name.

    Args:
        configs: the ``featurewise_nets`` entries.
        init_nets: the model's init nets (``input_name``, ``input_size``, ``output_size``).
        encoder: the model's encoder (its ``layers`` are conditioned for ``encoder``).
        num_parameters: number of PARAMETERS variables (the default condition's width).
    """

    def __init__(
        self,
        configs: Sequence[FeaturewiseConfig],
        init_nets: Sequence[Any],
        encoder: nn.Module | None,
        num_parameters: int,
    ) -> None:
        """Build one transformation per init net (``input``), per encoder layer (``encoder``)
        or one on the encoded constituents (``global``)."""
        super().__init__()
        if not init_nets:
            raise ValueError("model.featurewise_nets: need init_nets (not a backbone)")
        self.inputs = nn.ModuleDict()
        self.layers = nn.ModuleList()
        self.encoded: FeaturewiseTransformation | None = None
        self.conditions: dict[str, str] = {}
        embed_dim = int(init_nets[0].output_size)
        for i, config in enumerate(configs):
            where = f"model.featurewise_nets[{i}]"
            layer = config.get("layer")
            if layer not in LAYERS:
                raise ValueError(f"{where}.layer={layer!r}: expected one of {', '.join(LAYERS)}")
            if layer in self.conditions:
                raise ValueError(f"{where}: a second '{layer}' transformation; give one per layer")
            condition_on = config.get("condition_on", PARAMETERS)
            given = config.get("condition_size")
            if given is None and condition_on != PARAMETERS:
                raise ValueError(f"{where}.condition_size: not set (salt fills it)")
            size = num_parameters if given is None else int(given)
            self.conditions[layer] = condition_on

            if layer == "input":
                for net in init_nets:
                    self.inputs[net.input_name] = _transformation(
                        config, size, int(net.input_size), f"{where} ({net.input_name})"
                    )
            elif layer == "encoder":
                stack = encoder_layers(encoder)
                if stack is None:
                    raise ValueError(
                        f"{where}.layer=encoder: the model's encoder has no layer stack "
                        "(a TransformerEncoder or Transformer is needed)"
                    )
                self.layers.extend(
                    _transformation(config, size, embed_dim, f"{where} (layer {j})")
                    for j in range(len(stack))
                )
            else:
                size_out = embed_dim if encoder is None else cast(Encoder, encoder).output_size
                self.encoded = _transformation(config, size, size_out, where)

    @property
    def replaces_parameter_inputs(self) -> bool:
        """Whether PARAMETERS condition the init nets' inputs instead of being appended."""
        return self.conditions.get("input") == PARAMETERS

    def _condition(self, layer: str, inputs: Inputs) -> Tensor:
        name = self.conditions[layer]
        if name not in inputs:
            raise KeyError(f"featurewise_nets ({layer}): the inputs have no '{name}'")
        return inputs[name]

    def on_input(self, name: str, x: Tensor, inputs: Inputs) -> Tensor:
        """An init net's input (B, L, F) as it enters the embedding."""
        if name not in self.inputs:
            return x
        net: FeaturewiseTransformation = self.inputs[name]  # type: ignore[assignment]
        return net(x, self._condition("input", inputs))

    @contextmanager
    def on_encoder_layers(self, encoder: nn.Module | None, inputs: Inputs) -> Iterator[None]:
        """While the encoder runs, transform the input of each of its layers.

        Forward pre-hooks on the layers, installed for this call only: the encoder's own code
        stays as it is, in its padded form ``(B, L, D)`` and its packed form ``(N, D)`` (where
        the layer gets a ``packing`` that names each constituent's jet).
        """
        stack = encoder_layers(encoder) if len(self.layers) else None
        if stack is None:
            yield
            return
        condition = self._condition("encoder", inputs)
        handles = []
        for layer, net in zip(stack, self.layers):
            transform: FeaturewiseTransformation = net  # type: ignore[assignment]
            scale, shift = transform.modulation(condition)

            def hook(
                module: nn.Module,
                args: tuple[Any, ...],
                kwargs: dict[str, Any],
                transform: FeaturewiseTransformation = transform,
                scale: Tensor | None = scale,
                shift: Tensor | None = shift,
            ) -> tuple[tuple[Any, ...], dict[str, Any]]:
                packing = kwargs.get("packing", args[3] if len(args) > 3 else None)
                jet = None if packing is None else packing.jet
                x = transform.modulate(args[0], scale, shift, jet)
                return (x, *args[1:]), kwargs

            handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def on_encoded(self, x: Tensor, pad_mask: Tensor, inputs: Inputs) -> Tensor:
        """The encoded constituents (B, L, D) before pooling; padding stays zero."""
        if self.encoded is None:
            return x
        x = self.encoded(x, self._condition("global", inputs))
        return x.masked_fill(pad_mask.unsqueeze(-1), 0.0)


def wire_featurewise(net_args: Any, variables: dict[str, list[str]]) -> bool:
    """Fill each ``featurewise_nets`` entry's ``condition_size`` from ``data.variables``.

    Returns whether PARAMETERS condition the init nets' inputs (then they are not appended to
    them, and the init nets' input size leaves them out).
    """
    configs = getattr(net_args, "featurewise_nets", None) or []
    replaces = False
    for i, config in enumerate(configs):
        where = f"model.model.featurewise_nets[{i}]"
        name = config.get("condition_on", PARAMETERS)
        if not variables.get(name):
            raise ValueError(
                f"{where}.condition_on: '{name}' has no variables in data.variables "
                f"(expected one of {sorted(k for k, v in variables.items() if v)})"
            )
        size = len(variables[name])
        given = config.get("condition_size")
        if given is not None and int(given) != size:
            raise ValueError(
                f"{where}.condition_size={given} but data.variables[{name}] has {size}"
            )
        config["condition_size"] = size
        replaces = replaces or (config.get("layer") == "input" and name == PARAMETERS)
    return replaces


__all__ = [
    "LAYERS",
    "FeaturewiseConfig",
    "FeaturewiseNets",
    "FeaturewiseTransformation",
    "encoder_layers",
    "wire_featurewise",
]
