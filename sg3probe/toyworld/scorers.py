"""The toy world's scorer network: attributes, part masks and pose of 64x64 toy faces.

One small U-Net (`ToyFacesNet`) with three heads on a shared encoder:

- attributes: a logit per binary attribute (decided at 0) and a value per continuous one;
- segmentation: per-pixel logits over `REGIONS`, from the decoder at full resolution;
- pose: (cos, sin) of the angle and (tx, ty) scaled to [-1, 1], from the flattened 4x4 code
  (flattening, not pooling, keeps where things are, which translation needs).

Weights are a plain state dict saved beside a JSON-able config (`save_scorer_net` /
`load_scorer_net` mirror each other; `torch.load(weights_only=True)` reads them). The training
recipe is in `scorer_training.py`; the `toyfaces` scorer plugin wraps `ToyFacesPredictor`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sg3probe.errors import CheckpointError
from sg3probe.toyworld.attributes import ATTRIBUTES, MAX_TRANSLATE
from sg3probe.toyworld.render import REGIONS, RESOLUTION

FORMAT = "sg3probe-toyfaces-scorer"
FORMAT_VERSION = 1

BINARY = tuple(info.name for info in ATTRIBUTES if info.kind == "binary")
CONTINUOUS = tuple(info.name for info in ATTRIBUTES if info.kind == "continuous")
POSE_NAMES = ("angle_deg", "tx", "ty")


def conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Two 3x3 conv + BatchNorm + ReLU; the first one strided when downsampling."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@dataclasses.dataclass(frozen=True)
class NetOutput:
    """Raw outputs of `ToyFacesNet` for a batch of B images."""

    binary_logits: torch.Tensor  # [B, len(BINARY)]
    continuous: torch.Tensor  # [B, len(CONTINUOUS)], in the attributes' [0, 1] range
    pose: torch.Tensor  # [B, 4]: cos(angle), sin(angle), tx / MAX_TRANSLATE, ty / MAX_TRANSLATE
    region_logits: torch.Tensor  # [B, len(REGIONS), H, W]


class ToyFacesNet(nn.Module):
    """A U-Net over 64x64 images with attribute, pose and segmentation heads."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 96, 128), hidden: int = 256) -> None:
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"channels must list 5 widths (64, 32, 16, 8, 4 px); got {channels}")
        self.channels = tuple(channels)
        self.hidden = hidden
        widths = (3, *channels)
        self.encoder = nn.ModuleList(
            conv_block(widths[i], widths[i + 1], stride=1 if i == 0 else 2) for i in range(5))
        # Decoder: upsample, concatenate the encoder's features at that scale, refine.
        self.decoder = nn.ModuleList(
            conv_block(channels[i + 1] + channels[i], channels[i], stride=1) for i in reversed(range(4)))
        self.region_head = nn.Conv2d(channels[0], len(REGIONS), 1)
        code_size = channels[-1] * (RESOLUTION // 16) ** 2
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(code_size, hidden), nn.ReLU(inplace=True))
        self.attribute_head = nn.Linear(hidden, len(BINARY) + len(CONTINUOUS))
        self.pose_head = nn.Linear(hidden, 4)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"

    def config(self) -> dict[str, Any]:
        """What `load_scorer_net` needs to rebuild this network."""
        return {"channels": list(self.channels), "hidden": self.hidden}

    def forward(self, images: torch.Tensor) -> NetOutput:
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, RESOLUTION, RESOLUTION):
            raise ValueError(f"images must be [B, 3, {RESOLUTION}, {RESOLUTION}]; got {list(images.shape)}")
        features = []
        x = images
        for block in self.encoder:
            x = block(x)
            features.append(x)  # [B, C_i, 64 / 2^i, 64 / 2^i]
        code = self.trunk(x)  # [B, hidden]
        attributes = self.attribute_head(code)
        for block, skip in zip(self.decoder, reversed(features[:-1])):
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return NetOutput(
            binary_logits=attributes[:, :len(BINARY)],
            continuous=attributes[:, len(BINARY):],
            pose=self.pose_head(code),
            region_logits=self.region_head(x),
        )


def pose_targets(pose_values: torch.Tensor) -> torch.Tensor:
    """Renderer pose [B, 3] (angle deg, tx, ty) -> the net's pose targets [B, 4]."""
    angle = torch.deg2rad(pose_values[:, 0])
    return torch.stack([angle.cos(), angle.sin(),
                        pose_values[:, 1] / MAX_TRANSLATE, pose_values[:, 2] / MAX_TRANSLATE], dim=1)


def decode_pose(pose: torch.Tensor) -> torch.Tensor:
    """The net's pose output [B, 4] -> angle (degrees), tx, ty [B, 3]."""
    angle = torch.rad2deg(torch.atan2(pose[:, 1], pose[:, 0]))
    return torch.stack([angle, pose[:, 2] * MAX_TRANSLATE, pose[:, 3] * MAX_TRANSLATE], dim=1)


def save_scorer_net(net: ToyFacesNet, path: str | Path, training: dict[str, Any] | None = None) -> None:
    """Write the net as {format, config, state_dict, training}, atomically.

    Floating-point tensors are stored as float16 (half the size; the scores move by far less than
    the gates' margins) and read back as float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().to(torch.float16 if tensor.is_floating_point() else tensor.dtype)
             for name, tensor in net.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": net.config(),
               "regions": list(REGIONS), "binary": list(BINARY), "continuous": list(CONTINUOUS),
               "state_dict": state, "training": training or {}}
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    temporary.replace(path)


def load_scorer_net(path: str | Path, device: Any = "cpu") -> ToyFacesNet:
    """Rebuild a `ToyFacesNet` (eval mode, no gradients) from a file written by `save_scorer_net`."""
    path = Path(path)
    if not path.is_file():
        retrain = (f"`sg3probe toy train-scorers --out {path.parent}`" if path.name == "scorers.pt" else
                   "`sg3probe toy train-scorers --out FOLDER` (it writes FOLDER/scorers.pt) and give that file")
        raise CheckpointError(f"toy scorer weights {path} are missing; retrain them with {retrain}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a toy scorer file (format {FORMAT!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has toy scorer format version {payload.get('format_version')}; "
                              f"this sg3probe reads version {FORMAT_VERSION}")
    if (tuple(payload["regions"]), tuple(payload["binary"]), tuple(payload["continuous"])) != (
            REGIONS, BINARY, CONTINUOUS):
        raise CheckpointError(f"{path} was trained for other regions or attributes than this renderer's; "
                              "retrain it with `sg3probe toy train-scorers`")
    config = payload["config"]
    net = ToyFacesNet(channels=tuple(config["channels"]), hidden=config["hidden"])
    net.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor
                         for name, tensor in payload["state_dict"].items()})
    return net.to(device).eval().requires_grad_(False)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Everything the net says about a batch of B images, in the renderer's units."""

    binary_logits: torch.Tensor  # [B, len(BINARY)]
    continuous: torch.Tensor  # [B, len(CONTINUOUS)]
    pose: torch.Tensor  # [B, 3]: angle (degrees), tx, ty (fractions of the width)
    masks: torch.Tensor  # [B, H, W] int64 region ids


class ToyFacesPredictor:
    """A loaded `ToyFacesNet` behind one verb: `predict(images) -> Predictions`, in batches."""

    def __init__(self, net: ToyFacesNet, batch_size: int = 256) -> None:
        self.net = net.eval()
        self.batch_size = batch_size

    @classmethod
    def from_file(cls, path: str | Path, device: Any = "cpu") -> ToyFacesPredictor:
        """The predictor of a weights file written by `save_scorer_net`."""
        return cls(load_scorer_net(path, device))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Predictions:
        """Predictions for images [B, 3, 64, 64] in [-1, 1] (any device; outputs on the CPU)."""
        device = next(self.net.parameters()).device
        parts = []
        for start in range(0, images.shape[0], self.batch_size):
            output = self.net(images[start:start + self.batch_size].to(device, torch.float32))
            parts.append(Predictions(
                binary_logits=output.binary_logits.cpu(),
                continuous=output.continuous.clamp(0.0, 1.0).cpu(),
                pose=decode_pose(output.pose).cpu(),
                masks=output.region_logits.argmax(dim=1).cpu(),
            ))
        return Predictions(*(torch.cat([getattr(p, f.name) for p in parts])
                             for f in dataclasses.fields(Predictions)))


def angle_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in degrees, wrapped to [0, 180]."""
    return torch.remainder(a - b + 180.0, 360.0).sub(180.0).abs()

