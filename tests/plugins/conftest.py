"""Make the built-in plugins importable when the project is not installed.

The built-in plugins are top-level packages under plugins/, installed by the project's
packaging; a bare checkout run with `pytest` (no `pip install -e .`) has neither them nor the
repository root on sys.path, so both are added here, and only when missing, so that an
installed copy always wins.
"""
import importlib.util
import sys
from pathlib import Path

_REPOSITORY = Path(__file__).resolve().parents[2]

for _package, _folder in (("sg3probe", _REPOSITORY), ("sg3probe_disentanglement", _REPOSITORY / "plugins"),
                          ("sg3probe_rotation", _REPOSITORY / "plugins"),
                          ("sg3probe_stylespace", _REPOSITORY / "plugins"),
                          ("sg3probe_styleclip", _REPOSITORY / "plugins")):
    if importlib.util.find_spec(_package) is None:
        sys.path.insert(0, str(_folder))
