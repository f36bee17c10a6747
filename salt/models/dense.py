"""The fully connected network used for embeddings, feed-forward blocks and task heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from salt.models.configs import DenseConfig


def module_class(name: str, argument: str) -> type[nn.Module]:
    """Look up a ``torch.nn`` module class by name, so configs can say ``SiLU`` or ``LayerNorm``."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(
            f"{argument}: expected the name of a torch.nn module class such as 'SiLU' or "
            f"'LayerNorm', got {name!r}"
        )
    return cls


def make_activation(name: str, argument: str = "activation") -> nn.Module:
    """Build an activation from its ``torch.nn`` class name with default arguments."""
    try:
        return module_class(name, argument)()
    except TypeError as err:
        raise ValueError(f"{argument}: {name!r} cannot be built without arguments ({err})") from err


def make_norm(name: str, size: int, argument: str = "norm_layer") -> nn.Module:
    """Build a normalisation over the last dimension (e.g. LayerNorm, RMSNorm) of width ``size``."""
    try:
        return module_class(name, argument)(size)
    except TypeError as err:
        raise ValueError(f"{argument}: {name!r} cannot be built from a size ({err})") from err


class GatedLinear(nn.Module):
    """A gated linear unit layer: ``act(x W_a) * (x W_b)`` (GLU / SwiGLU family).

    The gate lets each hidden unit scale its own activation by a learned linear function of the
    input, which trains better than a plain activation at the same width in transformer
    feed-forward blocks. Both halves come from one Linear of width ``2 * output_size``.
    """

    def __init__(self, input_size: int, output_size: int, activation: str = "SiLU") -> None:
        """Build the joint projection and the activation of the gated half."""
        super().__init__()
        self.proj = nn.Linear(input_size, 2 * output_size)
        self.activation = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        """Map (..., input_size) to (..., output_size)."""
        gate, value = self.proj(x).chunk(2, dim=-1)
        return self.activation(gate) * value


class Dense(nn.Module):
    """An MLP acting on the last dimension, optionally conditioned on a per-jet context vector.

    Each hidden layer is Linear -> norm -> activation -> dropout; the last layer is a plain Linear
    followed by ``final_activation`` if given. The context (B, C) is appended to every row of the
    input, which is how jet-level features or parameters condition per-constituent networks.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_layers: list[int] | None = None,
        activation: str = "ReLU",
        final_activation: str | None = None,
        norm_layer: str | None = None,
        dropout: float = 0.0,
        context_size: int = 0,
        muP: bool = False,
        gated: bool = False,
    ) -> None:
        """Build the layers.

        Args:
            input_size: Width of the input features (without the context).
            output_size: Width of the output.
            hidden_layers: Widths of the hidden layers; none means a single Linear layer.
            activation: ``torch.nn`` class name of the hidden activation.
            final_activation: ``torch.nn`` class name applied to the output, if any.
            norm_layer: ``torch.nn`` class name of the hidden normalisation, if any.
            dropout: Dropout probability after each hidden activation.
            context_size: Width of the context appended to every input row; 0 for none.
            muP: Part of a maximal-update-parametrised network (Tensor Programs V): the layers
                are the same, and :meth:`reset_mup_parameters` gives them the muP initialisation
                once ``mup.set_base_shapes`` has been called on the model (``model.muP_config``).
            gated: Make every hidden layer a gated linear unit (:class:`GatedLinear`,
                ``activation(x W_a) * (x W_b)``), as in GLU/SwiGLU feed-forward blocks.
        """
        super().__init__()
        hidden_layers = [] if hidden_layers is None else list(hidden_layers)
        for argument, value in (("input_size", input_size), ("output_size", output_size)):
            if value <= 0:
                raise ValueError(f"{argument}: expected a positive int, got {value}")
        if any(size <= 0 for size in hidden_layers):
            raise ValueError(f"hidden_layers: expected positive ints, got {hidden_layers}")
        if context_size < 0:
            raise ValueError(f"context_size: expected an int >= 0, got {context_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        # Check names even when no hidden layer uses them, so a typo never passes silently.
        module_class(activation, "activation")
        if norm_layer is not None:
            module_class(norm_layer, "norm_layer")

        self.input_size = input_size
        self.output_size = output_size
        self.context_size = context_size
        self.muP = muP
        self.gated = gated

        layers: list[nn.Module] = []
        in_size = input_size + context_size
        for size in hidden_layers:
            if gated:  # the activation acts on the gate inside the unit
                layers.append(GatedLinear(in_size, size, activation))
            else:
                layers.append(nn.Linear(in_size, size))
            if norm_layer is not None:
                layers.append(make_norm(norm_layer, size))
            if not gated:
                layers.append(make_activation(activation))
            if dropout > 0.0:
                layers.append(nn.Dropout(dropout))
            in_size = size
        layers.append(nn.Linear(in_size, output_size))
        if final_activation is not None:
            layers.append(make_activation(final_activation, "final_activation"))
        self.net = nn.Sequential(*layers)

    def reset_mup_parameters(self) -> None:
        """muP initialisation of every Linear layer (needs ``mup.set_base_shapes`` first)."""
        for layer in self.net.modules():
            if isinstance(layer, nn.Linear):
                mup_init_linear(layer)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Map x (..., input_size) to (..., output_size); context is (B, context_size)."""
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"x: expected last dimension input_size={self.input_size}, got {x.shape[-1]}"
            )
        if self.context_size:
            if context is None or context.dim() != 2 or context.shape[-1] != self.context_size:
                got = None if context is None else tuple(context.shape)
                raise ValueError(
                    f"context: expected a (batch, {self.context_size}) tensor, got shape {got}"
                )
            # (B, C) -> (B, 1, ..., 1, C) -> broadcast to every row of x
            context = context.reshape(context.shape[0], *([1] * (x.dim() - 2)), self.context_size)
            x = torch.cat([x, context.expand(*x.shape[:-1], self.context_size)], dim=-1)
        elif context is not None:
            raise ValueError("context: this Dense was built with context_size=0, expected None")
        return self.net(x)


def mup_init_linear(linear: nn.Linear) -> None:
    """The muP initialisation of Tensor Programs V (Table 3) for one Linear layer.

    Weights are drawn from N(0, 1/fan_in_base) by ``mup.init.normal_``, which shrinks the
    standard deviation of matrices whose two dimensions are widths by sqrt(base/width): hidden
    weights get variance 1/fan_in at every width, input weights (finite fan-in) keep it, and the
    readout (``mup.MuReadout``, finite fan-out) keeps the base variance while its forward pass
    divides by the width multiplier, i.e. an effective variance 1/fan_in^2. Biases start at zero,
    which is width-independent. Needs ``linear.weight.infshape``, set by ``mup.set_base_shapes``.
    """
    import mup

    weight = linear.weight
    if not hasattr(weight, "infshape"):
        raise RuntimeError(
            "muP initialisation needs the base shapes: call mup.set_base_shapes on the model "
            "first (set model.muP_config and run setup_muP)"
        )
    fan_in = weight.infshape[1]
    base_fan_in = fan_in.base_dim or fan_in.dim
    mup.init.normal_(weight, std=base_fan_in**-0.5)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def dense_from_config(config: DenseConfig, argument: str = "dense_config") -> Dense:
    """Build a :class:`Dense` from a config, naming ``argument`` when a size is missing."""
    for key in ("input_size", "output_size"):
        if key not in config:
            raise ValueError(f"{argument}.{key}: missing, expected a positive int")
    return Dense(**config)


__all__ = [
    "Dense",
    "GatedLinear",
    "dense_from_config",
    "make_activation",
    "make_norm",
    "module_class",
    "mup_init_linear",
]
