"""Our StyleGAN3 generator: mapping network, Fourier-feature input, modulated synthesis layers.

Written from the StyleGAN3 paper and the conformance notes in shared/conformance; parameter and
buffer names follow NVIDIA's state_dict, so NVIDIA checkpoints load into it directly.
Shapes: B batch, I/O in/out channels, H/W height/width.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from sg3probe.models import ops
from sg3probe.models.architecture import (Architecture, GeneratorConfig, InputSpec, LayerSpec,
                                          derive_architecture)
from sg3probe.models.filters import design_lowpass_filter
from sg3probe.models.hooks import HookFn, HookPoint, installed_hooks, resolve_names

Styles = "OrderedDict[str, torch.Tensor]"


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit root-mean-square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class FullyConnected(torch.nn.Module):
    """Linear layer with equalised learning rate (weights stored divided by lr_multiplier)."""

    def __init__(self, in_features: int, out_features: int, *, activation: str = "linear",
                 lr_multiplier: float = 1.0, weight_init: float = 1.0, bias_init=0.0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features) * (weight_init / lr_multiplier))
        bias = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features]) / lr_multiplier
        self.bias = torch.nn.Parameter(torch.from_numpy(np.array(bias, dtype=np.float32)))
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        bias = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        if self.activation == "linear":
            return torch.addmm(bias.unsqueeze(0), x, weight.t())
        return F.leaky_relu(x.matmul(weight.t()) + bias, 0.2) * np.sqrt(2)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(torch.nn.Module):
    """z (and optional class label c) -> ws [B, num_ws, w_dim], with truncation towards w_avg."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.num_ws, self.num_layers, self.w_avg_beta = config.num_ws, config.mapping_layers, config.w_avg_beta
        if self.c_dim > 0:
            self.embed = FullyConnected(self.c_dim, self.w_dim)
        features = [self.z_dim + (self.w_dim if self.c_dim > 0 else 0)] + [self.w_dim] * self.num_layers
        for idx in range(self.num_layers):
            self.add_module(f"fc{idx}", FullyConnected(
                features[idx], features[idx + 1], activation="lrelu", lr_multiplier=config.mapping_lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.hook_w = HookPoint()

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [batch, {self.z_dim}], got {list(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim or c.shape[0] != z.shape[0]:
                raise ValueError(f"this generator is conditional: c must have shape [{z.shape[0]}, {self.c_dim}]")
            x = torch.cat([x, normalize_2nd_moment(self.embed(c.to(torch.float32)))], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        x = self.hook_w(x)  # [B, w_dim]
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [B, num_ws, w_dim]
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws


class SynthesisInput(torch.nn.Module):
    """Fourier features whose rotation/translation come from the style t and the user transform."""

    def __init__(self, w_dim: int, spec: InputSpec):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, spec.channels, spec.size
        self.sampling_rate, self.bandwidth = spec.sampling_rate, spec.bandwidth
        # Random frequencies, drawn uniformly from a disc of radius `bandwidth` (then loaded).
        freqs = torch.randn([self.channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * self.bandwidth
        self.weight = torch.nn.Parameter(torch.randn([self.channels, self.channels]))
        self.affine = FullyConnected(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([self.channels]) - 0.5)

    def forward(self, t: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
        """t [B, 4] normalised (r_c, r_s, t_x, t_y); transform [B, 3, 3] -> features [B, C, H, W]."""
        batch = t.shape[0]
        m_r = torch.eye(3, device=t.device).repeat([batch, 1, 1])  # inverse rotation of the image
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = torch.eye(3, device=t.device).repeat([batch, 1, 1])  # inverse translation
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ transform  # [B, 3, 3]
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)  # [B, C]
        freqs = freqs @ transforms[:, :2, :2]  # [B, C, 2]
        # Fade out frequencies that the transform pushes towards Nyquist.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)  # [B, C]
        theta = torch.eye(2, 3, device=t.device)
        theta[0, 0] = 0.5 * self.size / self.sampling_rate
        theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)  # [1, H, W, 2]
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [B, H, W, C]
        x = torch.sin((x + phases[:, None, None, :]) * (np.pi * 2)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)  # [B, C, H, W]

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class SynthesisLayer(torch.nn.Module):
    """Modulated convolution followed by the alias-free filtered leaky ReLU (or ToRGB)."""

    def __init__(self, w_dim: int, spec: LayerSpec, config: GeneratorConfig):
        super().__init__()
        self.spec = spec
        self.is_torgb = spec.is_torgb
        self.conv_clamp = config.conv_clamp
        self.magnitude_ema_beta = config.magnitude_ema_beta
        self.use_reference_ops = False
        self.affine = FullyConnected(w_dim, spec.in_channels, bias_init=1)
        k = spec.conv_kernel
        self.weight = torch.nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, k, k]))
        self.bias = torch.nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design_lowpass_filter(
            spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, spec.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, spec.tmp_sampling_rate, radial=spec.down_radial))

    @property
    def torgb_gain(self) -> float:
        """ToRGB scales its style by 1/sqrt(fan-in) and does not demodulate."""
        return 1 / np.sqrt(self.spec.in_channels * self.spec.conv_kernel ** 2)

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """w [B, w_dim] -> this layer's style [B, in_channels], as the layer uses it (S space)."""
        s = self.affine(w)
        return s * self.torgb_gain if self.is_torgb else s

    def forward(self, x: torch.Tensor, style: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
        """x [B, I, in_size, in_size], style [B, I] -> [B, O, out_size, out_size]."""
        if update_emas:
            magnitude = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        spec = self.spec
        gain, slope = (1.0, 1.0) if self.is_torgb else (np.sqrt(2), 0.2)
        if self.use_reference_ops:
            x = ops.reference_modulated_conv2d(x, self.weight, style, demodulate=not self.is_torgb,
                                               input_gain=input_gain, padding=spec.conv_kernel - 1)
            return ops.reference_filtered_lrelu(
                x, self.bias, up_filter=self.up_filter, down_filter=self.down_filter, up=spec.up_factor,
                down=spec.down_factor, padding=spec.padding, gain=gain, slope=slope, clamp=self.conv_clamp)
        x = ops.modulated_conv2d(x, self.weight, style, demodulate=not self.is_torgb,
                                 input_gain=input_gain, padding=spec.conv_kernel - 1, bias=self.bias)
        if self.is_torgb and spec.up_factor == spec.down_factor == 1 and spec.padding == (0, 0, 0, 0):
            return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)
        return ops.filtered_lrelu(x, None, up_filter=self.up_filter, down_filter=self.down_filter,
                                  up=spec.up_factor, down=spec.down_factor, padding=spec.padding,
                                  gain=gain, slope=slope, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        s = self.spec
        return (f"torgb={s.is_torgb}, critically_sampled={s.is_critically_sampled}, "
                f"channels={s.in_channels}->{s.out_channels}, size={s.in_size}->{s.out_size}, "
                f"rate={s.in_sampling_rate}->{s.out_sampling_rate}, up={s.up_factor}, down={s.down_factor}")


class SynthesisNetwork(torch.nn.Module):
    """ws or styles (+ optional per-sample transform) -> images [B, C, H, W]."""

    def __init__(self, config: GeneratorConfig, architecture: Architecture):
        super().__init__()
        self.w_dim, self.num_ws = config.w_dim, config.num_ws
        self.output_scale = config.output_scale
        self.layer_names = architecture.layer_names
        self.input = SynthesisInput(config.w_dim, architecture.input)
        for spec in architecture.layers:
            self.add_module(spec.name, SynthesisLayer(config.w_dim, spec, config))
        names = ["input"] + self.layer_names
        self.style_hooks = torch.nn.ModuleDict({name: HookPoint() for name in names})
        self.feature_hooks = torch.nn.ModuleDict({name: HookPoint() for name in names})
        self.image_hook = HookPoint()

    def styles(self, ws: torch.Tensor) -> Styles:
        """ws [B, num_ws, w_dim] -> the S space: 'input' [B, 4] normalised, then each layer's style."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [batch, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        t = self.input.affine(ws[:, 0])  # (r_c, r_s, t_x, t_y)
        styles = OrderedDict(input=t / t[:, :2].norm(dim=1, keepdim=True))
        for index, name in enumerate(self.layer_names):
            styles[name] = getattr(self, name).style(ws[:, index + 1])
        return styles

    def forward(self, ws: torch.Tensor | None = None, *, styles: Mapping[str, torch.Tensor] | None = None,
                transform: torch.Tensor | np.ndarray | None = None, update_emas: bool = False) -> torch.Tensor:
        """Render from exactly one of ws [B, num_ws, w_dim] or styles (as returned by `styles`).

        transform: the inverse user transform (see sg3probe.make_transform), [3, 3] or [B, 3, 3].
        """
        if (ws is None) == (styles is None):
            raise ValueError("pass exactly one of ws or styles")
        if styles is None:
            styles = self.styles(ws)
        missing = [name for name in ["input"] + self.layer_names if name not in styles]
        if missing:
            raise ValueError(f"styles lacks entries {missing}")
        t = self.style_hooks["input"](styles["input"])
        x = self.feature_hooks["input"](self.input(t, self._batch_transform(transform, t)))
        for name in self.layer_names:
            style = self.style_hooks[name](styles[name])
            x = self.feature_hooks[name](getattr(self, name)(x, style, update_emas=update_emas))
        # Layers hand on channels-last activations (see ops.filtered_lrelu); images are plain NCHW.
        return self.image_hook((x * self.output_scale).contiguous())

    @staticmethod
    def _batch_transform(transform, t: torch.Tensor) -> torch.Tensor:
        batch = t.shape[0]
        if transform is None:
            return torch.eye(3, device=t.device, dtype=t.dtype).expand(batch, 3, 3)
        transform = torch.as_tensor(transform, dtype=t.dtype, device=t.device)
        if transform.shape == (3, 3):
            return transform.expand(batch, 3, 3)
        if transform.shape == (batch, 3, 3):
            return transform
        raise ValueError(f"transform must have shape [3, 3] or [{batch}, 3, 3], got {list(transform.shape)}")


class Generator(torch.nn.Module):
    """A StyleGAN3 generator with NVIDIA's interface plus S space, transforms and hook points.

    G.mapping(z, c, truncation_psi, truncation_cutoff) -> ws; G.styles(ws) -> S;
    G.synthesis(ws | styles=S, transform=...) -> images in about [-1, 1]; G(z, ...) does both.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.architecture = derive_architecture(config)
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config, self.architecture)

    z_dim = property(lambda self: self.config.z_dim)
    c_dim = property(lambda self: self.config.c_dim)
    w_dim = property(lambda self: self.config.w_dim)
    num_ws = property(lambda self: self.config.num_ws)
    img_resolution = property(lambda self: self.config.img_resolution)
    img_channels = property(lambda self: self.config.img_channels)

    @property
    def w_avg(self) -> torch.Tensor:
        """The mapping network's running mean of W [w_dim]."""
        return self.mapping.w_avg

    @property
    def device(self) -> torch.device:
        return self.mapping.w_avg.device

    def styles(self, ws: torch.Tensor) -> Styles:
        """The StyleSpace S of ws: an ordered dict, see SynthesisNetwork.styles."""
        return self.synthesis.styles(ws)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, transform=None) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, transform=transform)

    # ----- hook points ------------------------------------------------------------------------
    @property
    def hook_points(self) -> "OrderedDict[str, HookPoint]":
        """Every named hook point: mapping.w, styles.<layer>, features.<layer>, image."""
        points: OrderedDict[str, HookPoint] = OrderedDict({"mapping.w": self.mapping.hook_w})
        for name, point in self.synthesis.style_hooks.items():
            points[f"styles.{name}"] = point
        for name, point in self.synthesis.feature_hooks.items():
            points[f"features.{name}"] = point
        points["image"] = self.synthesis.image_hook
        return points

    @contextlib.contextmanager
    def hooks(self, hooks: Mapping[str, HookFn] | Iterable[tuple[str, HookFn]]) -> Iterator["Generator"]:
        """Install fn(value, name) -> replacement|None at named points; removed on exit, always."""
        with installed_hooks(self.hook_points, hooks):
            yield self

    def run_with_cache(self, ws: torch.Tensor | None = None, names: Iterable[str] | None = None, *,
                       styles: Mapping[str, torch.Tensor] | None = None, transform=None,
                       detach: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Render and return (images, {hook name: value}) for the requested names (None: every hook point of
        the synthesis). 'mapping.w' fires in G.mapping, before the ws this starts from: asking for it is a
        ValueError (record it with `G.hooks({"mapping.w": fn})` around G.mapping)."""
        if names is None:
            wanted = [name for name in resolve_names(self.hook_points, None) if not name.startswith("mapping.")]
        else:
            wanted = resolve_names(self.hook_points, names)
            early = [name for name in wanted if name.startswith("mapping.")]
            if early:
                raise ValueError(f"run_with_cache starts from ws, after the mapping network, so {', '.join(early)} "
                                 "never fires here; record it with G.hooks({...}) around G.mapping(z, c)")
        cache: dict[str, torch.Tensor] = {}

        def record(value: torch.Tensor, name: str) -> None:
            cache[name] = value.detach() if detach else value

        with self.hooks([(name, record) for name in wanted]):
            images = self.synthesis(ws, styles=styles, transform=transform)
        return images, cache
