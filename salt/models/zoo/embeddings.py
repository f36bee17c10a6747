"""Feature embeddings shared by the zoo backbones (after SeeSawML's flat/jagged preprocessors).

Every input feature becomes a token of width E: numerical features through a shared linear map,
a per-feature linear map, or a piecewise-linear encoding (PLE, Gorishniy et al., arXiv
2203.05556) followed by a per-feature linear map; categorical features (named integer variables)
through ``nn.Embedding``. The tokens of one object are then reduced (averaged, concatenated or
mixed by a convolution) and optionally normalised. Embedding each feature on its own lets a
network see sharp, non-linear structure in single variables (e.g. impact-parameter tails) that a
first linear layer over all features blurs.

All models read one :class:`EmbeddingConfig`. Padded constituents are zeroed before and after
embedding, so their (arbitrary) values never reach the network.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salt.models.dense import make_activation
from salt.models.zoo.quantiles import load_bin_edges

Feature = tuple[str, str]
"""One input feature: (input type, variable), e.g. ``("tracks", "d0")``."""

FLAT_REDUCTIONS = ("mean", "reshape", "conv1d", "none")
JAGGED_REDUCTIONS = ("mean", "reshape", "conv2d")


class PostEmbeddingConfig(TypedDict, total=False):
    """Layers applied after the reduction: norm (layer or batch) -> activation -> dropout.

    Attributes:
        act: ``torch.nn`` activation class name, e.g. ``GELU``; none by default.
        layernorm: normalise every embedding over its width.
        batchnorm: batch normalisation over real entries only (padding excluded).
        dropout: dropout probability.
    """

    act: str | None
    layernorm: bool
    batchnorm: bool
    dropout: float


class EmbeddingConfig(TypedDict, total=False):
    """How a backbone turns input features into embeddings.

    Attributes:
        embed_dim: width E of every feature token; by default the model's first hidden width.
        numerical: ``linear`` (one Linear(1, E) shared by all features), ``featurewise`` (one
            per feature, the FT-Transformer tokenizer) or ``ple``.
        ple_bins: PLE bin edges: ``quantile`` (from ``bins_path``), ``uniform`` (``num_bins``
            equal bins over ``ple_range``) or ``learnable`` (initialised from ``bins_path`` when
            given, else uniform, then trained with the network).
        num_bins: bins per feature for ``uniform``/``learnable`` PLE.
        bins_path: the file written by ``salt calculate_quantiles``.
        ple_range: (low, high) of uniform bins, in normalised units (inputs are standardised).
        categorical: ``{variable: cardinality}`` of integer variables embedded with
            ``nn.Embedding``; values are read unnormalised and clipped to [0, cardinality).
        reduction: how the F tokens of one object are combined: ``mean`` (B, E), ``reshape``
            (B, F*E), ``conv1d`` (a learned mix of the tokens, (B, E)) or ``none`` (B, F, E) for
            jet-level inputs; ``mean``, ``reshape`` or ``conv2d`` for constituents, which are
            then projected to the model width.
        post_embeddings: layers after the reduction, see :class:`PostEmbeddingConfig`.
    """

    embed_dim: int
    numerical: Literal["linear", "featurewise", "ple"]
    ple_bins: Literal["quantile", "uniform", "learnable"]
    num_bins: int
    bins_path: str | None
    ple_range: tuple[float, float]
    categorical: dict[str, int]
    reduction: Literal["mean", "reshape", "conv1d", "conv2d", "none"]
    post_embeddings: PostEmbeddingConfig | None


def check_categorical(config: EmbeddingConfig, variables: dict[str, list[str]], where: str) -> None:
    """Fail early when a categorical name matches no input variable (typos would pass silently)."""
    known = {name for names in variables.values() for name in names}
    for name, size in config.get("categorical", {}).items():
        if name not in known:
            raise ValueError(f"{where}.categorical: '{name}' is not in data.variables")
        if size <= 0:
            raise ValueError(f"{where}.categorical.{name}: expected a cardinality > 0, got {size}")


class MaskedBatchNorm(nn.Module):
    """Batch normalisation over the last dimension using only the real (unpadded) entries.

    ``nn.BatchNorm1d`` would count padded constituents (or pairs) in its statistics, so the
    result would depend on how much padding a batch carries; here padding has zero weight and
    comes out as zero. A batch without real entries leaves the running statistics alone.
    Evaluation uses the running statistics, so the exported graph is a plain affine map.
    """

    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        """Build the affine parameters and running statistics of ``num_features`` channels."""
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Normalise x (..., C); ``pad_mask`` (x.shape[:-1], True = padded) excludes entries."""
        padded = None if pad_mask is None else pad_mask.unsqueeze(-1)
        if self.training:
            dims = tuple(range(x.dim() - 1))
            real = x if padded is None else x.masked_fill(padded, 0.0)
            count = (
                x.new_tensor(float(x[..., 0].numel()))
                if padded is None
                else (~padded).sum(dims).to(x.dtype)
            )
            n = count.clamp_min(1.0)
            mean = real.sum(dims) / n
            centred = (x - mean).square()
            if padded is not None:
                centred = centred.masked_fill(padded, 0.0)
            var = centred.sum(dims) / n
            with torch.no_grad():
                weight = self.momentum * (count > 0).to(x.dtype)
                unbiased = var * n / (n - 1.0).clamp_min(1.0)
                self.running_mean.lerp_(mean, weight)
                self.running_var.lerp_(unbiased, weight)
        else:
            mean, var = self.running_mean, self.running_var
        out = (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return out if padded is None else out.masked_fill(padded, 0.0)


class PiecewiseLinearEncoding(nn.Module):
    """PLE: feature x in bins [b_0, ..., b_T] -> T components (arXiv 2203.05556, eq. 1).

    Component t is 0 below its bin, 1 above it and linear inside; the first component is not
    clipped below and the last is not clipped above, so values outside the bins extrapolate.
    Features may have different numbers of bins (quantile edges of integer variables collapse):
    the unused components of a feature are always 0.

    Args:
        edges: increasing bin edges per feature (at least 2 each).
        learnable: train the edges; they are parametrised as a first edge plus softplus widths,
            so they stay increasing.
    """

    lower: Tensor
    upper: Tensor
    bin_mask: Tensor
    left: Tensor
    inv_width: Tensor

    def __init__(self, edges: list[list[float]], learnable: bool = False) -> None:
        super().__init__()
        for i, feature_edges in enumerate(edges):
            if len(feature_edges) < 2 or any(b <= a for a, b in itertools.pairwise(feature_edges)):
                raise ValueError(
                    f"PLE feature {i}: expected at least 2 strictly increasing edges, "
                    f"got {feature_edges}"
                )
        self.num_bins = max(len(e) for e in edges) - 1
        n_features, n_bins = len(edges), self.num_bins
        widths = torch.ones(n_features, n_bins, dtype=torch.float64)
        starts = torch.tensor([e[0] for e in edges], dtype=torch.float64)
        mask = torch.zeros(n_features, n_bins)
        upper = torch.ones(n_features, n_bins)
        for f, feature_edges in enumerate(edges):
            used = len(feature_edges) - 1
            widths[f, :used] = torch.diff(torch.tensor(feature_edges, dtype=torch.float64))
            mask[f, :used] = 1.0
            upper[f, used - 1] = math.inf  # the last real bin extrapolates upwards
        lower = torch.zeros(n_features, n_bins)
        lower[:, 0] = -math.inf  # the first bin extrapolates downwards
        self.register_buffer("lower", lower)
        self.register_buffer("upper", upper)
        self.register_buffer("bin_mask", mask)
        self.learnable = learnable
        if learnable:
            # inverse softplus, so that softplus(raw_width) == width at the start
            raw = widths + torch.log(-torch.expm1(-widths))
            self.start = nn.Parameter(starts.float())
            self.raw_width = nn.Parameter(raw.float())
        else:
            left = starts[:, None] + torch.cumsum(widths, dim=1) - widths
            self.register_buffer("left", left.float())
            self.register_buffer("inv_width", (1.0 / widths).float())

    def bin_edges(self) -> tuple[Tensor, Tensor]:
        """The left edge and 1 / width of every bin, each (F, T)."""
        if not self.learnable:
            return self.left, self.inv_width
        widths = F.softplus(self.raw_width)
        left = self.start[:, None] + torch.cumsum(widths, dim=1) - widths
        return left, 1.0 / widths

    def forward(self, x: Tensor) -> Tensor:
        """Encode x (..., F) to (..., F, T)."""
        left, inv_width = self.bin_edges()
        ratio = (x.unsqueeze(-1) - left) * inv_width
        ratio = torch.minimum(torch.maximum(ratio, self.lower), self.upper)
        return ratio * self.bin_mask


class FeatureTokens(nn.Module):
    """Embed every feature of an object on its own: (..., F) -> (..., F, E).

    Numerical tokens come first (in input order), then categorical ones. Categorical values are
    taken from the unnormalised inputs, since normalisation would turn class indices into floats.

    Args:
        features: the (input type, variable) of every input column.
        embed_dim: token width E.
        config: see :class:`EmbeddingConfig` (``reduction``/``post_embeddings`` are ignored).
    """

    num_index: Tensor
    cat_index: Tensor
    cat_offset: Tensor
    cat_max: Tensor

    def __init__(self, features: list[Feature], embed_dim: int, config: EmbeddingConfig) -> None:
        super().__init__()
        if embed_dim <= 0:
            raise ValueError(f"embeddings.embed_dim: expected a positive int, got {embed_dim}")
        categorical = config.get("categorical", {})
        numerical = [i for i, (_, var) in enumerate(features) if var not in categorical]
        cat_cols = [i for i, (_, var) in enumerate(features) if var in categorical]
        self.embed_dim = embed_dim
        self.num_tokens = len(features)
        self.register_buffer("num_index", torch.tensor(numerical, dtype=torch.long))
        self.register_buffer("cat_index", torch.tensor(cat_cols, dtype=torch.long))
        self.mode = config.get("numerical", "featurewise")
        if self.mode not in ("linear", "featurewise", "ple"):
            raise ValueError(
                f"embeddings.numerical: expected linear, featurewise or ple, got {self.mode!r}"
            )
        n_num = len(numerical)
        self.ple: PiecewiseLinearEncoding | None = None
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None
        if n_num:
            bound = embed_dim**-0.5
            if self.mode == "linear":
                shape: tuple[int, ...] = (embed_dim,)
            elif self.mode == "featurewise":
                shape = (n_num, embed_dim)
            else:
                self.ple = _build_ple([features[i] for i in numerical], config)
                shape = (n_num, self.ple.num_bins, embed_dim)
                bound = self.ple.num_bins**-0.5
            self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
            bias_shape = (embed_dim,) if self.mode == "linear" else (n_num, embed_dim)
            self.bias = nn.Parameter(torch.empty(bias_shape).uniform_(-bound, bound))
        self.categorical: nn.Embedding | None = None
        if cat_cols:
            sizes = [categorical[features[i][1]] for i in cat_cols]
            offsets = [sum(sizes[:j]) for j in range(len(sizes))]
            # one table for all categorical variables: a single gather in the exported graph
            self.categorical = nn.Embedding(sum(sizes), embed_dim)
            self.register_buffer("cat_offset", torch.tensor(offsets, dtype=torch.long))
            self.register_buffer("cat_max", torch.tensor(sizes, dtype=torch.long) - 1)

    def forward(self, x: Tensor, raw: Tensor) -> Tensor:
        """x: normalised features (..., F); raw: the same unnormalised. Returns (..., F, E)."""
        tokens = []
        if self.weight is not None and self.bias is not None:
            values = x.index_select(-1, self.num_index)
            if self.ple is not None:
                encoded = self.ple(values)  # (..., F, T)
                tokens.append(torch.einsum("...ft,fte->...fe", encoded, self.weight) + self.bias)
            else:
                tokens.append(values.unsqueeze(-1) * self.weight + self.bias)
        if self.categorical is not None:
            index = raw.index_select(-1, self.cat_index).round().long()
            index = torch.minimum(index.clamp(min=0), self.cat_max) + self.cat_offset
            tokens.append(self.categorical(index))
        return tokens[0] if len(tokens) == 1 else torch.cat(tokens, dim=-2)


def _build_ple(features: list[Feature], config: EmbeddingConfig) -> PiecewiseLinearEncoding:
    """Bin edges per feature from the config: a quantile file, uniform, or learnable."""
    bins = config.get("ple_bins", "quantile")
    path = config.get("bins_path")
    if bins not in ("quantile", "uniform", "learnable"):
        raise ValueError(
            f"embeddings.ple_bins: expected quantile, uniform or learnable, got {bins!r}"
        )
    if bins == "quantile" and path is None:
        raise ValueError(
            "embeddings.bins_path: ple_bins=quantile needs the file written by "
            "'salt calculate_quantiles' (or use ple_bins: uniform)"
        )
    if path is not None and bins != "uniform":
        table = load_bin_edges(path)
        edges = []
        for name, var in features:
            found = table.get(name, {}).get(var)
            if found is None:
                raise ValueError(f"embeddings.bins_path: '{path}' has no bins for {name}.{var}")
            edges.append(_widen(found))
    else:
        num_bins = config.get("num_bins", 16)
        low, high = config.get("ple_range", (-3.0, 3.0))
        if num_bins <= 0 or not high > low:
            raise ValueError(
                f"embeddings: expected num_bins > 0 and ple_range low < high, got "
                f"num_bins={num_bins}, ple_range=({low}, {high})"
            )
        uniform = torch.linspace(low, high, num_bins + 1, dtype=torch.float64).tolist()
        edges = [uniform for _ in features]
    return PiecewiseLinearEncoding(edges, learnable=bins == "learnable")


def _widen(edges: list[float]) -> list[float]:
    """A constant variable has a single quantile edge; give it one unit-wide bin around it."""
    return [edges[0] - 0.5, edges[0] + 0.5] if len(edges) == 1 else list(edges)


class PostEmbedding(nn.Module):
    """Norm -> activation -> dropout after the embedding; padded entries stay zero."""

    def __init__(self, width: int, config: PostEmbeddingConfig | None) -> None:
        super().__init__()
        config = config or {}
        if config.get("layernorm") and config.get("batchnorm"):
            raise ValueError("embeddings.post_embeddings: choose layernorm or batchnorm, not both")
        self.layernorm = nn.LayerNorm(width) if config.get("layernorm") else None
        self.batchnorm = MaskedBatchNorm(width) if config.get("batchnorm") else None
        act = config.get("act")
        self.act = make_activation(act, "embeddings.post_embeddings.act") if act else None
        dropout = config.get("dropout", 0.0)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"embeddings.post_embeddings.dropout: expected [0, 1), got {dropout}")
        self.dropout = nn.Dropout(dropout) if dropout else None

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        if self.layernorm is not None:
            x = self.layernorm(x)
        if self.batchnorm is not None:
            x = self.batchnorm(x, pad_mask)
        if self.act is not None:
            x = self.act(x)
        if self.dropout is not None:
            x = self.dropout(x)
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        return x


class FlatEmbedding(nn.Module):
    """Jet-level features (B, F) -> (B, W), or (B, F, E) with ``reduction: none``.

    With ``disable`` the features pass through unchanged (W = F), for the plain-MLP baseline.

    Args:
        features: the (input type, variable) of every column.
        embed_dim: the token width when the config gives none.
        config: see :class:`EmbeddingConfig`.
        disable: skip the embedding altogether.
    """

    def __init__(
        self,
        features: list[Feature],
        embed_dim: int,
        config: EmbeddingConfig | None = None,
        disable: bool = False,
    ) -> None:
        super().__init__()
        config = config or {}
        if not features:
            raise ValueError("embeddings: no input features to embed")
        self.disabled = disable
        self.reduction = config.get("reduction", "mean")
        if self.reduction not in FLAT_REDUCTIONS:
            raise ValueError(
                f"embeddings.reduction: expected one of {', '.join(FLAT_REDUCTIONS)} for jet-level "
                f"inputs, got {self.reduction!r}"
            )
        n = len(features)
        if disable:
            self.output_size = n
            return
        _check_linear_mean(config, self.reduction)
        width = config.get("embed_dim", embed_dim)
        self.tokens = FeatureTokens(features, width, config)
        self.conv = nn.Conv1d(n, 1, kernel_size=1) if self.reduction == "conv1d" else None
        out = n * width if self.reduction == "reshape" else width
        self.output_size = out  # with reduction none: the width of every token
        self.post = PostEmbedding(out, config.get("post_embeddings"))

    def forward(self, x: Tensor, raw: Tensor) -> Tensor:
        """x: normalised (B, F); raw: unnormalised (B, F)."""
        if self.disabled:
            return x
        tokens = self.tokens(x, raw)  # (B, F, E)
        if self.reduction == "mean":
            out = tokens.mean(dim=1)
        elif self.reduction == "reshape":
            out = tokens.flatten(1)
        elif self.reduction == "conv1d":
            assert self.conv is not None
            out = self.conv(tokens).squeeze(1)
        else:
            out = tokens
        return self.post(out)


class JaggedEmbedding(nn.Module):
    """Constituent features (B, L, F) -> (B, L, output_size), padded entries zero.

    The F tokens of each constituent are reduced, then projected to ``output_size`` when the
    reduced width differs, so that several constituent types can share one sequence.

    Args:
        features: the (input type, variable) of every column.
        output_size: width of the result (the model width).
        config: see :class:`EmbeddingConfig`; ``embed_dim`` defaults to ``output_size``.
    """

    def __init__(
        self, features: list[Feature], output_size: int, config: EmbeddingConfig | None = None
    ) -> None:
        super().__init__()
        config = config or {}
        if not features:
            raise ValueError("embeddings: no constituent features to embed")
        self.reduction = config.get("reduction", "mean")
        if self.reduction not in JAGGED_REDUCTIONS:
            raise ValueError(
                f"embeddings.reduction: expected one of {', '.join(JAGGED_REDUCTIONS)} for "
                f"constituents, got {self.reduction!r}"
            )
        _check_linear_mean(config, self.reduction)
        n = len(features)
        width = config.get("embed_dim", output_size)
        self.tokens = FeatureTokens(features, width, config)
        self.conv = nn.Conv2d(n, 1, kernel_size=1) if self.reduction == "conv2d" else None
        reduced = n * width if self.reduction == "reshape" else width
        self.project = nn.Linear(reduced, output_size) if reduced != output_size else None
        self.output_size = output_size
        self.post = PostEmbedding(output_size, config.get("post_embeddings"))

    def forward(self, x: Tensor, raw: Tensor, pad_mask: Tensor) -> Tensor:
        """x: normalised (B, L, F); raw: unnormalised (B, L, F); pad_mask (B, L)."""
        padded = pad_mask.unsqueeze(-1)
        tokens = self.tokens(x.masked_fill(padded, 0.0), raw.masked_fill(padded, 0.0))
        if self.reduction == "mean":
            out = tokens.mean(dim=2)
        elif self.reduction == "reshape":
            out = tokens.flatten(2)
        else:
            assert self.conv is not None
            out = self.conv(tokens.transpose(1, 2)).squeeze(1)  # features as channels
        if self.project is not None:
            out = self.project(out)
        return self.post(out.masked_fill(padded, 0.0), pad_mask)


def _check_linear_mean(config: EmbeddingConfig, reduction: str) -> None:
    # the mean of x_f * w + b over features is mean(x) * w + b: which feature is which is lost
    if config.get("numerical", "featurewise") == "linear" and reduction == "mean":
        raise ValueError(
            "embeddings: numerical=linear with reduction=mean only sees the mean of the "
            "features; use featurewise or ple, or another reduction"
        )


__all__ = [
    "EmbeddingConfig",
    "Feature",
    "FeatureTokens",
    "FlatEmbedding",
    "JaggedEmbedding",
    "MaskedBatchNorm",
    "PiecewiseLinearEncoding",
    "PostEmbedding",
    "PostEmbeddingConfig",
    "check_categorical",
]
