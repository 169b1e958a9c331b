"""The store's exception type (a subclass of the project's one-line user errors)."""
from __future__ import annotations

from sg3probe.errors import Sg3probeError


class StoreError(Sg3probeError):
    """A sample store is missing, incompatible, incomplete, corrupt, or was given bad arrays."""
