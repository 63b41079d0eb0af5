"""Tuning records: one JSON line per measured candidate, in tuning_logs/<target-key>.jsonl.

The one module that writes (the tuner) and reads (compile, the graph planner, `convsched show | bench`) them:

    make_record(layer, target, template, knobs, status, ...)   # a record, with every field a reader relies on
    append(path, record)                      # one atomic write per record, under an exclusive flock
    read(path)                                # records; corrupt or truncated lines skipped with one warning
    records_for(layer, target, log=None)      # this workload's records on this target key, template unchanged
    best_per_part(layer, target, log, part_of, defaults)   # the fastest verified (template, knobs) per part
    best_record(layer, target, log=None)      # (template, knobs) of the fastest verified record, or None
    best_records(path)                        # {(workload_key, target_key): best record} (for `convsched show`)

Where logs live: `log` may be a .jsonl file or a directory (then <dir>/<target-key>.jsonl); by default the
directory named by $CONVSCHED_TUNING_LOGS, else the repository's shipped tuning_logs/.

Lookup matches the exact target key (triple, CPU name, feature hash, cores) and the exact workload key, and
ignores, with a warning, records whose template source changed since they were measured (their knobs may no
longer mean the same loop nest). MetaSchedule's database ignores the target; this one never applies a record
measured on another CPU.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
import warnings
from pathlib import Path

from .backend import TVM_VERSION
from .schedule import get_template
from .version import __version__

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "tuning_logs"

# Status of a measured candidate. Only OK records are verified (checked against reference()) and timed.
OK = "ok"
FAILED_STATUSES = ("invalid", "build_error", "wrong", "run_error", "crash", "timeout", "error")


def default_dir() -> Path:
    env = os.environ.get("CONVSCHED_TUNING_LOGS")
    return Path(env) if env else SHIPPED_DIR


def log_path(target, log=None) -> Path:
    """The log file for `target`: `log` itself if it is a file path, <log or default dir>/<target key>.jsonl."""
    if log is None:
        return default_dir() / f"{target.key}.jsonl"
    p = Path(log)
    if p.suffix == ".jsonl" or p.is_file():
        return p
    return p / f"{target.key}.jsonl"


# ------------------------------------------------------------------------------------------------ writing
def append(path, record: dict) -> None:
    """Append one record as one line with a single write() on an O_APPEND descriptor, under flock.

    O_APPEND makes each write land at the current end of file even with several writers; the lock keeps a
    (rare) partial write from interleaving with another process's line; a tuner killed mid-run loses at most
    the record it had not yet written, never one already written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":"), default=_jsonable) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # A previous writer killed mid-line leaves no newline at the end: start on a fresh line so the
            # corrupt fragment stays one (skipped) line instead of swallowing this record.
            size = os.fstat(fd).st_size
            if size:
                with open(path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        line = b"\n" + line
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _jsonable(v):
    if hasattr(v, "item"):          # numpy scalars
        return v.item()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    return str(v)


# ------------------------------------------------------------------------------------------------ reading
_read_cache: dict = {}


def read(path, warn: bool = True) -> list[dict]:
    """All well-formed records of a log (missing file: none). Corrupt lines are skipped with one warning."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _read_cache:
        return _read_cache[key]
    records, bad = [], []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict) or "workload_key" not in rec or "template" not in rec:
                    raise ValueError("not a tuning record")
            except (ValueError, UnicodeDecodeError):
                bad.append(i)
                continue
            records.append(rec)
    if bad and warn:
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        warnings.warn(f"{path}: skipped {len(bad)} corrupt line(s) (line {shown})", stacklevel=2)
    _read_cache.clear()          # keep only the newest version of one file: logs grow while tuning
    _read_cache[key] = records
    return records


_hash_warned: set = set()


def source_hash_of(template: str) -> str | None:
    """The current source hash of a template (None if it no longer loads)."""
    try:
        return get_template(template).source_hash
    except Exception:
        return None


def current(rec: dict, warn: bool = True) -> bool:
    """False (with a warning, once per template and hash) if the record's template source has changed."""
    now = source_hash_of(rec["template"])
    if now is not None and now == rec.get("template_hash"):
        return True
    if warn:
        _warn_stale(rec["template"], rec.get("template_hash"), now)
    return False


def _warn_stale(template: str, old: str | None, now: str | None):
    k = (template, old)
    if k not in _hash_warned:
        _hash_warned.add(k)
        why = "no longer exists" if now is None else f"changed (hash {old} -> {now})"
        warnings.warn(f"ignoring tuning records of template {template}: its source {why}; "
                      f"re-tune to use it", stacklevel=4)


def records_for(layer, target, log=None, warn: bool = True) -> list[dict]:
    """Records of this exact workload and target key whose template source is unchanged.

    Records of an edited template are ignored. That deserves a warning only while the edit has left this
    workload without a current record of that template (not yet re-tuned); once it is re-tuned, the old
    records are history, kept in the append-only log, and say nothing."""
    wk, tk = layer.workload_key, target.key
    fresh, stale = [], []
    for r in read(log_path(target, log), warn=warn):
        if r.get("workload_key") == wk and (r.get("target") or {}).get("key") == tk:
            (fresh if current(r, warn=False) else stale).append(r)
    if warn:
        retuned = {r["template"] for r in fresh}
        for r in stale:
            if r["template"] not in retuned:
                _warn_stale(r["template"], r.get("template_hash"), source_hash_of(r["template"]))
    return fresh


def is_good(rec: dict) -> bool:
    return rec.get("status") == OK and bool(rec.get("verified")) and (rec.get("timing") or {}).get("median_ms")


def best(records) -> dict | None:
    good = [r for r in records if is_good(r)]
    return min(good, key=lambda r: r["timing"]["median_ms"]) if good else None


def best_per_part(layer, target, log=None, part_of=None, defaults=None) -> dict:
    """{part: (template, knobs)} of the fastest verified record of each part of a kernel, for this workload and
    target key. A single-function kernel has one part (part_of=None: every record is of it).

    part_of(template name) -> the part a template schedules (None: ignore the record). defaults: {part:
    (default template, its default knobs)}. A multi-part record times a whole call with one part's candidate
    and every other part at its template defaults; a record of a part's default template at its defaults
    therefore measured the all-default configuration, and counts as a sample of every part's defaults
    (otherwise one noisy sample of the defaults per part decides: 128->128 global picked a delta candidate
    0.79x as fast as the defaults that way, 1 thread, AMD Zen 3, 2026-11)."""
    best_of: dict = {}

    def offer(part, template, knobs, ms):
        if part not in best_of or ms < best_of[part][2]:
            best_of[part] = (template, dict(knobs), ms)

    defaults = defaults or {}
    for r in records_for(layer, target, log):
        if not is_good(r):
            continue
        part = part_of(r["template"]) if part_of else None
        if part_of and part is None:
            continue
        ms = r["timing"]["median_ms"]
        offer(part, r["template"], r["knobs"], ms)
        if part in defaults and (r["template"], dict(r["knobs"])) == defaults[part]:
            for other, (tmpl, knobs) in defaults.items():
                if other != part and knobs is not None:
                    offer(other, tmpl, knobs, ms)
    return {part: (t, kn) for part, (t, kn, _) in best_of.items()}


def best_record(layer, target, log=None):
    """(template, knobs) of the fastest verified record for this workload on this target key, or None."""
    return best_per_part(layer, target, log).get(None)


def best_records(path, warn: bool = True) -> dict:
    """{(workload_key, target_key): best verified record} over a whole log."""
    out = {}
    for r in read(path, warn=warn):
        if not is_good(r):
            continue
        k = (r["workload_key"], (r.get("target") or {}).get("key"))
        if k not in out or r["timing"]["median_ms"] < out[k]["timing"]["median_ms"]:
            out[k] = r
    return out


def make_record(layer, target, template: str, knobs: dict, status: str, *, timing: dict | None = None,
                rate: float | None = None, unit: str | None = None, error: str | None = None,
                build_s: float | None = None, measured_on: str = "local", strategy: str | None = None,
                session: str | None = None, trial: int | None = None, template_hash: str | None = None) -> dict:
    """A tuning record: what was measured (workload, template and its source hash, knobs), where (target,
    versions), how it went (status, verified) and how fast (timing, rate)."""
    return {
        "workload_key": layer.workload_key,
        "layer": type(layer).__name__,
        "layer_kind": layer.KIND,
        "template": template,
        "template_hash": template_hash or source_hash_of(template),
        "knobs": dict(knobs),
        "target": {"triple": target.triple, "mcpu": target.mcpu, "feature_hash": target.feature_hash,
                   "cores": target.cores, "key": target.key},
        "versions": {"convsched": __version__, "tvm": TVM_VERSION},
        "timing": timing,                 # {"median_ms", "p10_ms", "p90_ms", "runs"} or None
        "rate": rate, "unit": unit,       # throughput at the median, e.g. GFLOP/s
        "status": status,
        "verified": status == OK,         # OK means: output equal (or close) to reference() before timing
        "error": error,
        "build_s": build_s,
        "measured_on": measured_on,
        "strategy": strategy, "session": session, "trial": trial,
        "timestamp": time.time(),
    }
