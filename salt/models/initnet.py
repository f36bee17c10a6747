"""Per-input-type embedding into the shared width of the encoder."""

from __future__ import annotations

from torch import Tensor, nn

from salt.models.configs import DenseConfig
from salt.models.dense import dense_from_config


class InitNet(nn.Module):
    """Embed one constituent type (tracks, electrons, ...) so all types share one width.

    Heterogeneous inputs have different numbers of variables; one InitNet per type maps each to
    ``dense_config["output_size"]`` so the encoder can treat them alike. ``input_size`` is derived
    by the framework from the variable list (plus the jet variables when ``attach_global``).
    """

    def __init__(
        self, input_name: str, dense_config: DenseConfig, attach_global: bool = True
    ) -> None:
        """Build the embedding network.

        Args:
            input_name: The input type this network embeds, e.g. ``tracks``.
            dense_config: Arguments of the :class:`~salt.models.dense.Dense` embedding network.
            attach_global: Whether the jet-level variables are appended to every constituent
                before embedding (the caller does the concatenation; this records the choice).
        """
        super().__init__()
        if not input_name:
            raise ValueError("input_name: expected the name of an input type, got ''")
        self.input_name = input_name
        self.attach_global = attach_global
        self.net = dense_from_config(dense_config, f"init_nets[{input_name}].dense_config")
        self.input_size: int = self.net.input_size
        self.output_size: int = self.net.output_size

    def forward(self, x: Tensor) -> Tensor:
        """Embed x (B, L, input_size) to (B, L, output_size)."""
        return self.net(x)


__all__ = ["InitNet"]
