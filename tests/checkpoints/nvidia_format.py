"""Write pickles in NVIDIA's snapshot format (persistence records, torch tensors) for tests.

The globals are emitted under NVIDIA's names through stand-in modules, so the files look to our
loader exactly like NVIDIA's, without any NVIDIA code.
"""
from __future__ import annotations

import collections
import io
import pickle
import sys
import types

from sg3probe.checkpoints.nvidia_pickle import PersistentRecord


def _stand_in(module_name: str, attribute: str):
    parent = module_name.rpartition(".")[0]
    if parent:
        sys.modules.setdefault(parent, types.ModuleType(parent))
    module = sys.modules.get(module_name) or types.ModuleType(module_name)
    sys.modules[module_name] = module

    def function(*args):  # never called: it only gives pickle a global name to write
        raise AssertionError("stand-in called")

    function.__module__, function.__qualname__, function.__name__ = module_name, attribute, attribute
    setattr(module, attribute, function)
    return function


_RECONSTRUCT = _stand_in("torch_utils.persistence", "_reconstruct_persistent_obj")


class EasyDict(dict):
    pass


EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
sys.modules.setdefault("dnnlib", types.ModuleType("dnnlib"))
sys.modules.setdefault("dnnlib.util", types.ModuleType("dnnlib.util"))
sys.modules["dnnlib.util"].EasyDict = EasyDict


class _Pickler(pickle.Pickler):
    def __init__(self, file, ordered: bool, protocol: int):
        super().__init__(file, protocol=protocol)
        self.ordered = ordered

    def reducer_override(self, obj):
        if isinstance(obj, PersistentRecord):
            state = dict(obj.state)
            for key in ("_parameters", "_buffers", "_modules"):
                if key in state and state[key] is not None:
                    state[key] = (collections.OrderedDict if self.ordered else dict)(state[key])
            meta = dict(type="class", version=6, module_src=obj.module_src, class_name=obj.class_name, state=state)
            return _RECONSTRUCT, (meta,)
        if type(obj).__name__ == "_EasyDict":  # our loader's stand-in: write it back as dnnlib's
            return EasyDict, (), None, None, iter(obj.items())
        return NotImplemented


def dumps(snapshot: dict, ordered: bool = False, protocol: int = 4) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, ordered, protocol).dump(snapshot)
    return buffer.getvalue()
