"""Where convsched's files are: the shipped templates and tuning records, and the user's tuning records.

    shipped_templates()   schedules/ of a checkout (or an editable install), else the installed package's copy
    shipped_records()     tuning_logs/ likewise: read-only, never written by convsched
    cache_dir()           $CONVSCHED_CACHE_DIR, else $XDG_CACHE_HOME/convsched (~/.cache/convsched)
    user_records()        $CONVSCHED_TUNING_LOGS, else <cache_dir()>/tuning_logs: where the tuner writes

A wheel carries copies of the repository's top-level schedules/ and tuning_logs/ in convsched/_data/ (setup.py
copies them when it builds the package), so the same lookups work in a checkout and in site-packages, and a tune
writes into neither.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "_data"          # what setup.py fills in a built package; absent in a checkout


def _shipped(name: str) -> Path:
    # The package's own copy first: in site-packages, a sibling folder of that name would belong to someone else.
    for d in (DATA_DIR / name, PACKAGE_DIR.parent / name):
        if d.is_dir():
            return d
    return DATA_DIR / name


def shipped_templates() -> Path:
    return _shipped("schedules")


def shipped_records() -> Path:
    return _shipped("tuning_logs")


def inside_package(path) -> bool:
    """True if `path` lies inside the installed package (or its data), where convsched never writes."""
    p = Path(path).expanduser().resolve()
    return p == PACKAGE_DIR or PACKAGE_DIR in p.parents


def cache_dir() -> Path:
    """convsched's per-user cache: $CONVSCHED_CACHE_DIR, else $XDG_CACHE_HOME/convsched, else ~/.cache/convsched
    (measured peaks, the user's tuning records)."""
    env = os.environ.get("CONVSCHED_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    # The XDG spec: a relative $XDG_CACHE_HOME is invalid and must be ignored.
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "convsched"


def user_records() -> Path:
    """The directory the tuner writes to unless told otherwise (created when the first record is written):
    $CONVSCHED_TUNING_LOGS, else <cache_dir()>/tuning_logs."""
    env = os.environ.get("CONVSCHED_TUNING_LOGS")
    return Path(env).expanduser() if env else cache_dir() / "tuning_logs"
