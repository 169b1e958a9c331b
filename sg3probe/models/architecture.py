"""The StyleGAN3 generator's configuration and the per-layer hyperparameters derived from it.

Everything here is plain Python/numpy: it describes the network, it does not build it. The
derivation follows the StyleGAN3 paper (Karras et al. 2021, appendix F): cutoffs and stopbands
grow geometrically from the first to the last layer, sampling rates are the next power of two
above twice the stopband, and the last `num_critical` layers are critically sampled.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Keyword arguments NVIDIA's Generator accepts, grouped by the sub-network they configure.
_MAPPING_KEYS = {"num_layers", "lr_multiplier", "w_avg_beta"}
_SYNTHESIS_KEYS = {
    "channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff",
    "first_stopband", "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res",
}
_LAYER_KEYS = {
    "conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp",
    "magnitude_ema_beta",
}


@dataclass(frozen=True)
class GeneratorConfig:
    """Every hyperparameter of a StyleGAN3 generator (NVIDIA's names and defaults)."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 256
    img_channels: int = 3
    # Mapping network.
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.998
    # Synthesis network.
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4
    # Synthesis layers.
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999

    def __post_init__(self) -> None:
        if self.img_resolution < 4 or self.img_resolution & (self.img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {self.img_resolution}")
        if self.num_layers <= self.num_critical:
            raise ValueError("num_layers must be larger than num_critical")

    @property
    def num_ws(self) -> int:
        """Rows of W+: one for the input layer, one per synthesis layer (ToRGB included)."""
        return self.num_layers + 2

    @property
    def config_name(self) -> str:
        """'stylegan3-r' for the rotation-equivariant configuration, else 'stylegan3-t'."""
        return "stylegan3-r" if self.conv_kernel == 1 and self.use_radial_filters else "stylegan3-t"

    @classmethod
    def from_nvidia_kwargs(cls, kwargs: dict[str, Any]) -> "GeneratorConfig":
        """Build from NVIDIA's Generator init kwargs (as stored in a training snapshot)."""
        kwargs = dict(kwargs)
        values: dict[str, Any] = {}
        for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
            if key in kwargs:
                values[key] = kwargs.pop(key)
        mapping = dict(kwargs.pop("mapping_kwargs", {}) or {})
        for key, value in mapping.items():
            if key not in _MAPPING_KEYS:
                raise ValueError(f"unsupported mapping_kwargs key {key!r}")
            values[{"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier"}.get(key, key)] = value
        for key, value in kwargs.items():
            if key in _SYNTHESIS_KEYS or key in _LAYER_KEYS:
                values[key] = value
            elif key in ("synthesis_kwargs", "layer_kwargs"):
                for inner_key, inner_value in dict(value).items():
                    values[inner_key] = inner_value
            else:
                raise ValueError(f"unsupported Generator kwarg {key!r}")
        return cls(**{k: _plain(v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `GeneratorConfig(**d)` rebuilds the same config."""
        return dataclasses.asdict(self)


def _plain(value: Any) -> Any:
    """Numpy scalars from pickles -> Python scalars, so configs stay JSON-able."""
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class InputSpec:
    """The Fourier-feature input layer."""

    channels: int
    size: int
    sampling_rate: float
    bandwidth: float


@dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer, named as NVIDIA names it: L{index}_{out_size}_{out_channels}."""

    index: int
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int] = field(default=(0, 0, 0, 0))  # x0, x1, y0, y1

    @property
    def style_dim(self) -> int:
        """Length of this layer's style vector in S (its input channels)."""
        return self.in_channels


@dataclass(frozen=True)
class Architecture:
    """The input layer and all synthesis layers of a configuration."""

    input: InputSpec
    layers: tuple[LayerSpec, ...]

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]


def derive_architecture(config: GeneratorConfig) -> Architecture:
    """Per-layer sizes, sampling rates, cutoffs, filter lengths and padding for a config."""
    n = config.num_layers
    last_cutoff = config.img_resolution / 2
    last_stopband = last_cutoff * config.last_stopband_rel
    exponents = np.minimum(np.arange(n + 1) / (n - config.num_critical), 1)
    cutoffs = config.first_cutoff * (last_cutoff / config.first_cutoff) ** exponents
    stopbands = config.first_stopband * (last_stopband / config.first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, config.img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + config.margin_size * 2
    sizes[-2:] = config.img_resolution
    channels = np.rint(np.minimum((config.channel_base / 2) / cutoffs, config.channel_max))
    channels[-1] = config.img_channels

    input_spec = InputSpec(int(channels[0]), int(sizes[0]), float(sampling_rates[0]), float(cutoffs[0]))
    layers = []
    for idx in range(n + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == n
        conv_kernel = 1 if is_torgb else config.conv_kernel
        in_rate, out_rate = int(sampling_rates[prev]), int(sampling_rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else config.lrelu_upsampling)
        up_factor = int(np.rint(tmp_rate / in_rate))
        down_factor = int(np.rint(tmp_rate / out_rate))
        up_taps = config.filter_size * up_factor if up_factor > 1 and not is_torgb else 1
        down_taps = config.filter_size * down_factor if down_factor > 1 and not is_torgb else 1
        is_critical = idx >= n - config.num_critical
        in_size, out_size = int(sizes[prev]), int(sizes[idx])
        # Padding so that (zero-insert, pad, filter, lrelu, filter, decimate) lands on out_size.
        pad_total = (out_size - 1) * down_factor + 1
        pad_total -= (in_size + conv_kernel - 1) * up_factor
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + up_factor) // 2
        pad_hi = pad_total - pad_lo
        out_channels = int(channels[idx])
        layers.append(LayerSpec(
            index=idx, name=f"L{idx}_{out_size}_{out_channels}", is_torgb=is_torgb,
            is_critically_sampled=is_critical, in_channels=int(channels[prev]),
            out_channels=out_channels, in_size=in_size, out_size=out_size,
            in_sampling_rate=in_rate, out_sampling_rate=out_rate, tmp_sampling_rate=tmp_rate,
            in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
            conv_kernel=conv_kernel, up_factor=up_factor, down_factor=down_factor,
            up_taps=up_taps, down_taps=down_taps,
            down_radial=config.use_radial_filters and not is_critical,
            padding=(int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi)),
        ))
    return Architecture(input_spec, tuple(layers))


def stylegan3_config(cfg: str = "stylegan3-t", **overrides: Any) -> GeneratorConfig:
    """A config as NVIDIA's train.py builds it: for 'stylegan3-r', kernel 1, radial filters and
    doubled channel_base/channel_max (train.py doubles them for G only)."""
    if cfg not in ("stylegan3-t", "stylegan3-r"):
        raise ValueError(f"cfg must be 'stylegan3-t' or 'stylegan3-r', got {cfg!r}")
    base = GeneratorConfig(**overrides)
    if cfg == "stylegan3-r":
        base = dataclasses.replace(
            base, conv_kernel=1, use_radial_filters=True,
            channel_base=base.channel_base * 2, channel_max=base.channel_max * 2,
        )
    return base


def describe_styles(arch: Architecture) -> list[dict[str, Any]]:
    """The S layout: one row per entry of G.styles(ws) (input first), for `sg3probe info`."""
    rows = [{"name": "input", "ws_index": 0, "resolution": arch.input.size, "channels": 4, "s_dims": 4, "torgb": False}]
    for layer in arch.layers:
        rows.append({
            "name": layer.name, "ws_index": layer.index + 1, "resolution": layer.out_size,
            "channels": layer.out_channels, "s_dims": layer.style_dim, "torgb": layer.is_torgb,
        })
    return rows

