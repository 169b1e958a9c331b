"""Read NVIDIA StyleGAN3 training snapshots (.pkl) without executing anything from the file.

NVIDIA stores every network through `torch_utils.persistence`, embedding the module source,
which NVIDIA's own loader `exec`s. We instead unpickle with an allowlist of globals: persistent
objects become inert `PersistentRecord`s (class name + state), tensors are rebuilt by torch's
weights-only machinery, and anything else a file asks for (os.system, ...) is refused before it
can run. The generator is then rebuilt from G_ema's recorded init kwargs and tensors.
"""
from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sg3probe.errors import CheckpointError, UnsafePickleError


@dataclass
class PersistentRecord:
    """What NVIDIA's persistence stores for one network object, without its code."""

    class_name: str
    module_src: str
    state: dict

    @property
    def modules(self) -> dict:
        return dict(self.state.get("_modules") or {})

    def named_tensors(self, prefix: str = "") -> dict[str, torch.Tensor | None]:
        """Parameters and persistent buffers of this object and its children, dotted like state_dict."""
        tensors: dict[str, torch.Tensor | None] = {}
        non_persistent = set(self.state.get("_non_persistent_buffers_set") or ())
        for key, value in (self.state.get("_parameters") or {}).items():
            tensors[prefix + key] = value
        for key, value in (self.state.get("_buffers") or {}).items():
            if key not in non_persistent:
                tensors[prefix + key] = value
        for name, child in self.modules.items():
            if isinstance(child, PersistentRecord):
                tensors.update(child.named_tensors(f"{prefix}{name}."))
            elif child is not None:
                raise CheckpointError(f"unexpected object {type(child).__name__} at {prefix}{name} in the pickle")
        return tensors


class _EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a plain dict is all we need of it."""


def _reconstruct_persistent_obj(meta: dict) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointError("unsupported persistent object in the pickle (expected NVIDIA persistence meta)")
    return PersistentRecord(str(meta.get("class_name")), str(meta.get("module_src", "")), dict(meta.get("state") or {}))


def _load_storage_from_bytes(data: bytes):
    # A legacy torch.save stream holding one storage; torch's weights-only unpickler reads it.
    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_parameter(tensor: torch.Tensor, requires_grad: bool, backward_hooks: Any, *args: Any) -> torch.Tensor:
    return tensor


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("builtins", "set"): set,  # pickles of protocol <= 3 spell sets this way
}
try:  # numpy >= 2 moved the implementation; either spelling in a file maps to the one installed.
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
for _numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_numpy_core, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(_numpy_core, "scalar")] = _multiarray.scalar


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"it asks for {module}.{name}, which a StyleGAN3 checkpoint never needs; refused, nothing was executed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("it uses persistent ids, which NVIDIA snapshots never do; refused")


def read_snapshot(path: str | Path) -> dict:
    """Unpickle an NVIDIA snapshot into plain data and PersistentRecords, executing nothing."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(b"\x80"):
        raise CheckpointError(f"{path} is not a pickle file (no pickle header); give an NVIDIA .pkl or an sg3probe checkpoint")
    try:
        snapshot = _RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"refused to load {path}: {error}") from None
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, RuntimeError) as error:
        if isinstance(error, EOFError) or "truncated" in str(error) or "Ran out of input" in str(error):
            raise CheckpointError(f"{path} is truncated or damaged ({error}); download or copy it again") from None
        raise CheckpointError(f"{path} could not be read as an NVIDIA pickle ({error})") from None
    if not isinstance(snapshot, dict):
        raise CheckpointError(f"{path} holds a {type(snapshot).__name__}, not an NVIDIA snapshot dict with G_ema")
    return snapshot


def _generator_kind(record: PersistentRecord) -> str:
    """'stylegan3', 'stylegan2' or 'unknown', judged from the network's structure, never by running it."""
    synthesis = record.modules.get("synthesis")
    if not isinstance(synthesis, PersistentRecord):
        return "unknown"
    children = synthesis.modules
    if "input" in children and isinstance(children["input"], PersistentRecord) and \
            "freqs" in (children["input"].state.get("_buffers") or {}):
        return "stylegan3"
    if any(name.startswith("b") and name[1:].isdigit() for name in children):
        return "stylegan2"
    return "unknown"


def generator_from_snapshot(snapshot: dict, path: str | Path = "checkpoint"):
    """Rebuild our Generator from a snapshot's G_ema (init kwargs + tensors)."""
    from sg3probe.models.architecture import GeneratorConfig
    from sg3probe.models.generator import Generator

    record = snapshot.get("G_ema")
    if not isinstance(record, PersistentRecord):
        raise CheckpointError(f"{path} has no G_ema network (keys: {', '.join(map(str, snapshot))}); is it a StyleGAN training snapshot?")
    kind = _generator_kind(record)
    if kind == "stylegan2":
        raise CheckpointError(f"{path} holds a StyleGAN2/StyleGAN2-ADA generator; sg3probe supports StyleGAN3 only (not yet StyleGAN2)")
    if kind != "stylegan3" or record.class_name != "Generator":
        raise CheckpointError(f"{path}: G_ema is a {record.class_name} of unknown structure, not a StyleGAN3 Generator")
    kwargs = dict(record.state.get("_init_kwargs") or {})
    try:
        config = GeneratorConfig.from_nvidia_kwargs(kwargs)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: unsupported generator settings ({error})") from None
    tensors = record.named_tensors()
    transform = tensors.pop("synthesis.input.transform", None)
    if transform is not None and not torch.equal(transform, torch.eye(3)):
        raise CheckpointError(f"{path} stores a non-identity input transform; sg3probe takes transforms per call "
                              "(transform=...), so reset it to the identity before saving")
    state_dict = {key: value for key, value in tensors.items() if value is not None}
    generator = Generator(config)
    missing, unexpected = generator.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensors do not match the StyleGAN3 layout of its own config "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return generator.eval().requires_grad_(False)
