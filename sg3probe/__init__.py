"""sg3probe: analyse and edit the latent spaces of StyleGAN3 generators.

Public API:
    load_generator(source, device=None) -> Generator   (NVIDIA .pkl, sg3probe checkpoint, zoo name)
    Generator: .mapping(z, c, truncation_psi, truncation_cutoff) -> ws [B, num_ws, w_dim]
               .styles(ws) -> S (ordered dict), .synthesis(ws | styles=S, transform=...) -> images
               .run_with_cache(ws, names) and .hooks({...}) for named hook points
    make_transform(translate=(tx, ty), angle=degrees) and inverse_transform(...) for transform=
    z_from_seeds(seeds, z_dim): NVIDIA's per-seed z
    hookimpl: the marker for plugin hook implementations
"""
from sg3probe.checkpoints import load_generator, load_model, save_generator
from sg3probe.hookspecs import hookimpl
from sg3probe.models.architecture import GeneratorConfig, stylegan3_config
from sg3probe.models.generator import Generator
from sg3probe.models.transforms import inverse_transform, make_transform
from sg3probe.sampling.latents import z_from_seeds

__version__ = "0.1.0"

__all__ = [
    "Generator", "GeneratorConfig", "hookimpl", "inverse_transform", "load_generator", "load_model",
    "make_transform", "save_generator", "stylegan3_config", "z_from_seeds",
]
