"""Run folders: numbered allocation, run.json provenance, timings, status and the log file.

    reports/00003-disentanglement-toyfaces/
        run.json       argv, resolved config, seeds, model path + sha256, versions, device,
                       plugins, start/end, timings, status ("running" -> "complete" | "failed" | "interrupted")
        config.toml    the resolved config; `--config config.toml` runs it again
        run.log        the log
        samples/ results/<analyzer>/ report.html
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import re
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from sg3probe.config import dumps_toml
from sg3probe.errors import Sg3probeError

RUN_FILE = "run.json"
LOG_FILE = "run.log"
CONFIG_FILE = "config.toml"
DEFAULT_ROOT = Path("reports")
_NUMBERED = re.compile(r"^(\d{5,})-")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RunFolderError(Sg3probeError):
    """A run folder is missing, incomplete or damaged."""


def safe_name(name: str) -> str:
    """`name` as a portable file-name part: runs of other characters become '_'."""
    safe = _UNSAFE.sub("_", name).strip("._")
    return safe[:80] or "_"


def allocate_run_dir(root: str | Path, analysis: str, model: str) -> Path:
    """Create root/<NNNNN>-<analysis>-<model>/ with the next free number, safe against races.

    os.mkdir is atomic, but two processes can take the same number under different names: each
    looks after its mkdir, and one that sees another folder with its number moves on. The later
    of the two always sees both, so no number is ever shared (one may be skipped).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    suffix = f"{safe_name(analysis)}-{safe_name(model)}"
    number = _highest_number(root) + 1
    while True:
        folder = root / f"{number:05d}-{suffix}"
        try:
            os.mkdir(folder)
        except FileExistsError:
            number += 1
            continue
        if any(other != folder.name and _number(other) == number for other in os.listdir(root)):
            os.rmdir(folder)
            number = max(number, _highest_number(root)) + 1
            continue
        return folder


def _number(name: str) -> int | None:
    match = _NUMBERED.match(name)
    return int(match.group(1)) if match else None


def _highest_number(root: Path) -> int:
    return max((n for n in map(_number, os.listdir(root)) if n is not None), default=-1)


def package_versions() -> dict[str, str | None]:
    """Versions of python and of the packages whose numbers change results."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("sg3probe", "torch", "numpy", "scipy", "scikit-learn", "pandas", "matplotlib"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    if versions["sg3probe"] is None:  # running from a source tree that is not installed
        from sg3probe import __version__
        versions["sg3probe"] = __version__
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Run:
    """A run folder being filled: keeps run.json current and logs to run.log.

    `config` is the resolved config as a dict (``ResolvedConfig.to_dict()``); it goes into run.json
    and config.toml. Use as a context manager; leaving it normally marks the run complete, leaving it by an
    exception marks it failed with that exception's message (interrupted for Ctrl-C) and lets it go on::

        with Run(folder, argv=sys.argv, config=resolved.to_dict(), device="cpu") as run:
            with run.timing("sample"):
                ...
            run.update(seeds="0-9999", model={"path": ..., "sha256": ...})
    """

    def __init__(self, folder: str | Path, *, argv: list[str] | None = None,
                 config: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record: dict[str, Any] = {
            "status": "running",
            "argv": list(sys.argv if argv is None else argv),
            "config": dict(config or {}),
            "versions": package_versions(),
            "platform": platform.platform(),
            "started": _now(),
            "ended": None,
            "timings": {},
            **fields,
        }
        self.log = logging.getLogger(f"sg3probe.run.{self.folder.name}")
        self._handler: logging.Handler | None = None
        self._started = time.perf_counter()

    def __enter__(self) -> "Run":
        handler = logging.FileHandler(self.folder / LOG_FILE, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.log.addHandler(handler)
        self.log.setLevel(logging.INFO)
        self._handler = handler
        self.write()
        if self.record["config"]:
            (self.folder / CONFIG_FILE).write_text(dumps_toml(self.record["config"]), encoding="utf-8")
        self.log.info("run started: %s", " ".join(self.record["argv"]))
        return self

    def __exit__(self, exc_type: Any, error: BaseException | None, traceback: Any) -> None:
        try:
            if error is None:
                self.finish("complete")
            elif isinstance(error, KeyboardInterrupt):
                self.log.error("run interrupted")
                self.finish("interrupted", error="stopped by Ctrl-C, SIGINT or SIGTERM; run the same command again "
                                                 "to resume")
            else:
                message = " ".join(str(error).split()) or exc_type.__name__
                self.log.error("run failed: %s: %s", exc_type.__name__, message)
                self.finish("failed", error=f"{exc_type.__name__}: {message}")
        finally:
            if self._handler is not None:
                self.log.removeHandler(self._handler)
                self._handler.close()
                self._handler = None

    def update(self, **fields: Any) -> None:
        """Add or replace fields of run.json and write it."""
        self.record.update(fields)
        self.write()

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        """Time a step; its seconds are added to run.json's timings[name] and logged to run.log."""
        start = time.perf_counter()
        self.log.info("%s ...", name)
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            timings = self.record["timings"]
            timings[name] = round(timings.get(name, 0.0) + seconds, 3)
            self.log.info("%s: %.1f s", name, seconds)
            self.write()

    def finish(self, status: str, error: str | None = None) -> None:
        """Mark the run complete, failed or interrupted and record the end time."""
        self.record.update(status=status, ended=_now(),
                           seconds=round(time.perf_counter() - self._started, 3))
        if error is not None:
            self.record["error"] = error
        self.write()

    def write(self) -> None:
        """Write run.json atomically, so a reader never sees half of it."""
        text = json.dumps(self.record, indent=2, ensure_ascii=False, default=str) + "\n"
        temporary = self.folder / f".{RUN_FILE}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.folder / RUN_FILE)


def read_run(folder: str | Path) -> dict[str, Any]:
    """The run.json of a run folder; a RunFolderError if it is not one."""
    path = Path(folder) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{str(folder)!r} is not a run folder: it has no {RUN_FILE}; "
                             "give a folder made by `sg3probe run`") from None
    except json.JSONDecodeError as error:
        raise RunFolderError(f"{path} is damaged: {error}") from None
