"""Loading and saving generators: NVIDIA pickles (safely), our native format, and zoo names."""
from sg3probe.checkpoints.loading import LoadedModel, file_sha256, load_generator, load_model
from sg3probe.checkpoints.native import save_generator

__all__ = ["LoadedModel", "file_sha256", "load_generator", "load_model", "save_generator"]
