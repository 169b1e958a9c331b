"""The `openclip` scorer: open_clip text-image models from local checkpoint files.

The model code is `sg3probe.textimage_openclip`; this plugin only registers it, so that the
scorer is listed (`sg3probe scorers`) whether or not open_clip is installed: building one without
the package, or without a checkpoint file, fails with one line saying what to do.
"""
from __future__ import annotations

import sg3probe
from sg3probe.textimage_openclip import OpenClipScorer


@sg3probe.hookimpl
def register_scorers(register):
    register(OpenClipScorer)
