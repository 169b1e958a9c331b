"""How strong a global edit is: alpha calibrated with the text-image model alone.

StyleCLIP leaves alpha to the user, who watches the edit grow and stops when it shows. A fixed
default fits some texts and not others: the same alpha that makes a smile visible overshoots an edit
that saturates early (wider eyes grow dark rims) and undershoots a slow one. The calibrated alpha
stops where the text-image model sees the edit as plainly as the texts vary among unedited images:

    alpha = the smallest alpha on the grid alpha_step, 2 alpha_step, ..., alpha_max with
    mean_i [cos(E(G(s_i + alpha delta_s)), t) - cos(E(G(s_i)), t)] >= sigmas * std_i cos(E(G(s_i)), t)

over calibration latents s_i (samples the edit is not evaluated on), t the prompt's embedding. The
unit is the natural spread of the prompt's similarity, as InterFaceGAN strengths are in natural stds
of the boundary projection. When no alpha reaches the level, the alpha of the largest gain is used
and `reached` says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from sg3probe.editing import edit_styles
from sg3probe.errors import ConfigError
from sg3probe.textimage import TextImageScorer

# 0.8: the middle of the levels (0.7-0.9) that met the limits for the most prompts on seeds
# 300-363 of both toy models, away from the analyzer's held-out seeds (docs/styleclip.md).
DEFAULT_SIGMAS = 0.8
DEFAULT_ALPHA_STEP = 0.5
DEFAULT_ALPHA_MAX = 10.0


@dataclass
class AlphaCalibration:
    """The calibrated alpha of one global direction, and the evidence for it."""

    alpha: float
    reached: bool  # whether the gain reached `sigmas` natural stds within alpha_max
    sigmas: float
    natural_std: float  # std over the calibration images of their cosine to the prompt
    alphas: np.ndarray  # [k] the alphas tried, ascending (the scan stops at the first that reaches)
    gains: np.ndarray  # [k] mean similarity gain at each, in natural stds

    @property
    def gain(self) -> float:
        """The similarity gain at the chosen alpha, in natural stds."""
        return float(self.gains[self.alphas == self.alpha][0])

    def describe(self) -> str:
        how = (f"level {self.sigmas:g}" if self.reached else
               f"the most up to alpha {self.alphas[-1]:g}; the level {self.sigmas:g} is not reached")
        return f"alpha {self.alpha:g}: the similarity to the prompt rises by {self.gain:.2f} natural std ({how})"

    def to_json(self) -> dict:
        return {"alpha": self.alpha, "reached": self.reached, "sigmas": self.sigmas, "natural_std": self.natural_std,
                "alphas": self.alphas.tolist(), "gains": self.gains.tolist()}


def check_grid(sigmas: float, alpha_step: float, alpha_max: float) -> None:
    """Raise ConfigError naming a calibration setting that cannot work."""
    if not sigmas > 0:
        raise ConfigError(f"the calibration level (alpha_sigmas) must be > 0 natural stds, got {sigmas}")
    if not 0 < alpha_step <= alpha_max:
        raise ConfigError(f"the alpha grid needs 0 < alpha_step <= alpha_max, got step {alpha_step} and max "
                          f"{alpha_max}")


def s_edit(G, step: torch.Tensor, alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The edit s' = s + alpha * step (step over flattened S) as a function of ws that renders."""
    def edit(ws: torch.Tensor) -> torch.Tensor:
        return G.synthesis(styles=edit_styles(G.styles(ws), step.to(ws.device), alpha))
    return edit


@torch.no_grad()
def _similarities(model: TextImageScorer, render: Callable[[torch.Tensor], torch.Tensor], ws: torch.Tensor,
                  prompt: torch.Tensor, batch_size: int) -> np.ndarray:
    """cos(E(render(ws)), prompt) per latent, [n]."""
    values = [(model.encode_image(render(ws[start:start + batch_size])).float() @ prompt).cpu().numpy()
              for start in range(0, len(ws), batch_size)]
    return np.concatenate(values).astype(np.float64)


def calibrate_alpha(G, model: TextImageScorer, delta_s: np.ndarray, prompt: np.ndarray, ws: torch.Tensor, *,
                    sigmas: float = DEFAULT_SIGMAS, alpha_step: float = DEFAULT_ALPHA_STEP,
                    alpha_max: float = DEFAULT_ALPHA_MAX, batch_size: int = 32) -> AlphaCalibration:
    """The alpha at which editing `ws` [n, num_ws, w_dim] (n >= 2) by delta_s (flattened S) raises their
    mean cosine to `prompt` (unit, [D]) by `sigmas` times its std over the unedited images."""
    check_grid(sigmas, alpha_step, alpha_max)
    if len(ws) < 2:
        raise ConfigError(f"alpha calibration needs at least 2 latents to measure a spread, got {len(ws)}")
    ws = torch.as_tensor(ws, dtype=torch.float32, device=G.device)
    text = torch.as_tensor(np.asarray(prompt), dtype=torch.float32, device=G.device)
    step = torch.as_tensor(np.asarray(delta_s), dtype=torch.float32, device=G.device)
    before = _similarities(model, G.synthesis, ws, text, batch_size)
    natural_std = float(before.std())
    if natural_std < 1e-8:
        raise ConfigError("the calibration images all have the same similarity to the prompt, so no strength "
                          "can be measured against their spread; give an alpha")
    alphas, gains = [], []
    count = int(np.floor(alpha_max / alpha_step + 1e-9))
    for alpha in alpha_step * np.arange(1, count + 1):
        after = _similarities(model, s_edit(G, step, float(alpha)), ws, text, batch_size)
        alphas.append(float(alpha))
        gains.append(float(np.mean(after - before)) / natural_std)
        if gains[-1] >= sigmas:
            break
    alphas, gains = np.asarray(alphas), np.asarray(gains)
    reached = bool(gains[-1] >= sigmas)
    chosen = float(alphas[-1] if reached else alphas[int(np.argmax(gains))])
    return AlphaCalibration(chosen, reached, float(sigmas), natural_std, alphas, gains)
