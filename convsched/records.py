"""Tuning records: one JSON line per measured candidate, in <records dir>/<target-key>.jsonl.

The one module that writes (the tuner) and reads (compile, the graph planner, `convsched show | bench`) them:

    make_record(layer, target, template, knobs, status, ...)   # a record, with every field a reader relies on
    append(path, record)                      # one atomic write per record, under an exclusive flock
    read(path)                                # valid records; corrupt lines and malformed records skipped
                                              # with one warning naming the file and the lines
    records_for(layer, target, log=None)      # this workload's records on this target key, template unchanged
    best_per_part(layer, target, log, part_of, defaults)   # the chosen (template, knobs) per part
    best_record(layer, target, log=None)      # (template, knobs) of the chosen record, or None
    best_records(paths)                       # {(workload_key, target_key): chosen record} (`convsched show`)

Where records live (convsched/paths.py): the tuner appends to the user's directory ($CONVSCHED_TUNING_LOGS,
else <cache>/tuning_logs, <cache> being $CONVSCHED_CACHE_DIR or $XDG_CACHE_HOME/convsched) unless given `log`
(a .jsonl file or a directory, then <dir>/<target-key>.jsonl). Lookup reads the user's records, then the shipped ones (read-only, the repository's
tuning_logs/ or an installed package's copy); an explicit `log` is read alone.

Lookup matches the exact target key (triple, CPU name, feature hash, cores) and the exact workload key, and
ignores, with a warning, records whose template source changed since they were measured (their knobs may no
longer mean the same loop nest). MetaSchedule's database ignores the target; this one never applies a record
measured on another CPU.

Nothing a log holds can crash a reader: each line is checked against the schema below when read (problem()),
and each record of a workload against its template's current knob space and constraint when looked up
(records_for); a record that fails is skipped with one warning naming the log file and line, and lookup
falls back to the next-best valid record.

Choosing among records (choose()): one measurement is noisy (two runs of one kernel on a shared core differed
2x), so records are grouped by (template, knobs) and each group is judged by the median of its measurements
across sessions; "confirm" records (the tuner re-measuring its top candidates interleaved at the end of a session)
are preferred: a group with confirm records is judged by their median alone, and any confirmed group beats every
unconfirmed one.

Over 400 lines, one module on purpose: the record format, its checks and the ranking change together.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import time
import warnings
from pathlib import Path

from .backend import TVM_VERSION
from .errors import ConvschedError
from .layers import registry
from .paths import shipped_records, user_records
from .schedule import get_template
from .version import __version__

SHIPPED_DIR = shipped_records()        # read-only: the repository's tuning_logs/, or an installed package's copy

# Status of a measured candidate. Only OK records are verified (checked against reference()) and timed.
OK = "ok"
FAILED_STATUSES = ("invalid", "build_error", "wrong", "run_error", "crash", "timeout", "error")
# The strategy of the records the tuner writes when it re-measures its top candidates at the end of a session.
CONFIRM = "confirm"


def default_dir() -> Path:
    """Where the tuner writes unless given a log: the user's records directory (never the shipped one)."""
    d = user_records()
    if d.exists() and not d.is_dir():
        raise ConvschedError(f"{d} is not a directory (tuning logs are <dir>/<target key>.jsonl; "
                             f"set CONVSCHED_TUNING_LOGS to a directory)")
    return d


def log_path(target, log=None) -> Path:
    """The log file for `target`: `log` itself if it is a file path, <log or default dir>/<target key>.jsonl."""
    if log is None:
        return default_dir() / f"{target.key}.jsonl"
    if not isinstance(log, (str, os.PathLike)):
        raise ValueError(f"log must be a .jsonl file or a directory (a path), got {log!r}")
    p = Path(log).expanduser()
    if p.suffix == ".jsonl" or p.is_file():
        return p
    return p / f"{target.key}.jsonl"


def read_paths(target, log=None) -> list[Path]:
    """The logs a lookup reads, in order: `log` alone when given, else the user's then the shipped one."""
    if log is not None:
        return [log_path(target, log)]
    paths = [log_path(target), SHIPPED_DIR / f"{target.key}.jsonl"]
    return paths if paths[0].resolve() != paths[1].resolve() else paths[:1]


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
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_knob_value(v) -> bool:
    """A knob value a record may hold: a JSON scalar, or a list of them (a tuple knob, as JSON writes it)."""
    if isinstance(v, list):
        return all(_is_knob_value(x) for x in v)
    return v is None or isinstance(v, (str, bool)) or _number(v)


def problem(rec) -> str | None:
    """Why `rec` is not a tuning record every reader can rely on (None if it is): the schema of make_record."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    for k in ("workload_key", "template", "status", "layer"):
        if not isinstance(rec.get(k), str):
            return f"{k} is {_show(rec.get(k))}, not a string"
    try:
        if not isinstance(json.loads(rec["workload_key"]), dict):
            raise ValueError
    except ValueError:
        return "workload_key is not the JSON of a layer"
    if rec["template"].count("/") != 1:
        return f"template {_show(rec['template'])} is not '<layer>/<name>'"
    if rec["status"] not in (OK,) + FAILED_STATUSES:
        return f"status {_show(rec['status'])} is none of {', '.join((OK,) + FAILED_STATUSES)}"
    knobs = rec.get("knobs")
    if not isinstance(knobs, dict):
        return f"knobs is {_show(knobs)}, not an object"
    bad = [k for k, v in knobs.items() if not _is_knob_value(v)]
    if bad:
        return f"knob {bad[0]!r} is {_show(knobs[bad[0]])}, not a number, string, boolean or null"
    target = rec.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("key"), str):
        return f"target is {_show(target)}, not an object with a key"
    for k in ("template_hash", "error", "unit"):
        if rec.get(k) is not None and not isinstance(rec[k], str):
            return f"{k} is {_show(rec[k])}, not a string"
    if "verified" in rec and not isinstance(rec["verified"], bool):
        return f"verified is {_show(rec['verified'])}, not true or false"
    timing = rec.get("timing")
    if timing is not None and not isinstance(timing, dict):
        return f"timing is {_show(timing)}, not an object"
    if rec["status"] == OK and rec.get("verified"):
        if timing is None:
            return "a verified record without timing"
        for k in ("median_ms", "p10_ms", "p90_ms"):
            if not _number(timing.get(k)) or timing[k] <= 0:
                return f"timing.{k} is {_show(timing.get(k))}, not a positive finite number of milliseconds"
        if not _number(rec.get("rate")) or rec["rate"] <= 0:
            return f"rate is {_show(rec.get('rate'))}, not a positive finite number"
    return None


def _show(v) -> str:
    r = json.dumps(v) if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
    return r if len(r) <= 40 else r[:37] + "..."


def _normalised(rec: dict) -> dict:
    """Lists in knob values back to the tuples a template's space holds (JSON has no tuples)."""
    if any(isinstance(v, list) for v in rec["knobs"].values()):
        rec["knobs"] = {k: _tuples(v) for k, v in rec["knobs"].items()}
    return rec


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


_read_cache: dict = {}
_line_of: dict = {}          # id(record) -> (path, line) of the records read last, for warnings


def _skipped(what: str, bad: list) -> str:
    """'skipped 2 corrupt line(s) (line 3, line 9 (why))' for [(line, why or "")]."""
    shown = ", ".join(f"line {i}" + (f" ({why})" if why else "") for i, why in bad[:8])
    return f"skipped {len(bad)} {what} ({shown}{', ...' if len(bad) > 8 else ''})"


def read(path, warn: bool = True, validate: bool = True) -> list[dict]:
    """All valid records of a log (missing file: none). Corrupt lines and records that break the schema
    (problem()) are skipped, with one warning naming the file and the lines. validate=False: every JSON
    object line, unchecked (for logs of something else than tuning records)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    except OSError as e:                # a directory component that is a file, no permission, ...
        if warn:
            warnings.warn(f"{path}: cannot read tuning records: {e}", stacklevel=2)
        return []
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, validate)
    if key in _read_cache:
        return _read_cache[key]
    records, corrupt, malformed = [], [], []
    try:
        with open(path, "rb") as f:
            lines = list(f)
    except OSError as e:                # e.g. the path is a directory, or unreadable
        if warn:
            warnings.warn(f"{path}: cannot read tuning records: {e}", stacklevel=2)
        return []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict) or "workload_key" not in rec or "template" not in rec:
                raise ValueError("not a tuning record")
        except (ValueError, UnicodeDecodeError, RecursionError):
            corrupt.append((i, ""))
            continue
        why = problem(rec) if validate else None
        if why:
            malformed.append((i, why))
            continue
        records.append(_normalised(rec) if validate else rec)
        _line_of[id(rec)] = (str(path), i)
    if (corrupt or malformed) and warn:
        parts = ([_skipped("corrupt line(s)", corrupt)] if corrupt else []) + \
                ([_skipped("malformed record(s)", malformed)] if malformed else [])
        warnings.warn(f"{path}: " + "; ".join(parts), stacklevel=2)
    for old in [k for k in _read_cache if k[0] == key[0]]:   # one version per file: logs grow while tuning
        for r in _read_cache.pop(old):
            _line_of.pop(id(r), None)
    _read_cache[key] = records
    return records


def where(rec: dict) -> str:
    """"<log>:<line>" of a record read by read() (for warnings), else "a tuning log"."""
    loc = _line_of.get(id(rec))
    return f"{loc[0]}:{loc[1]}" if loc else "a tuning log"


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
    """Records of this exact workload and target key whose template source is unchanged and whose knobs are a
    legal point of that template for this layer and target (else skipped, with a warning naming the line).

    Records of an edited template are ignored. That deserves a warning only while the edit has left this
    workload without a current record of that template (not yet re-tuned); once it is re-tuned, the old
    records are history, kept in the append-only log, and say nothing."""
    wk, tk = layer.workload_key, target.key
    fresh, stale = [], []
    legal = _KnobCheck(layer, target)
    for path in read_paths(target, log):
        for r in read(path, warn=warn):
            if r["workload_key"] != wk or r["target"]["key"] != tk:
                continue
            if not current(r, warn=False):
                stale.append(r)
                continue
            why = legal.problem(r)
            if why is None:
                fresh.append(r)
            elif warn:
                _warn_illegal(r, why)
    if warn:
        retuned = {r["template"] for r in fresh}
        for r in stale:
            if r["template"] not in retuned:
                _warn_stale(r["template"], r.get("template_hash"), source_hash_of(r["template"]))
    return fresh


class _KnobCheck:
    """Whether a record's knobs are a legal point of its template for one layer and target (the template's
    knob space is evaluated once per template)."""

    def __init__(self, layer, target):
        self.layer, self.target, self.spaces = layer, target, {}

    def problem(self, rec: dict) -> str | None:
        name = rec["template"]
        try:
            t = get_template(name)
            if name not in self.spaces:
                self.spaces[name] = t.knob_space(self.layer, self.target)
            return t.knob_problem(self.layer, self.target, rec["knobs"], self.spaces[name])
        except ConvschedError as e:          # a template that no longer loads or whose space fails
            return str(e)


_illegal_warned: set = set()


def _warn_illegal(rec: dict, why: str):
    loc = where(rec)
    if (loc, why) not in _illegal_warned:
        _illegal_warned.add((loc, why))
        warnings.warn(f"{loc}: tuning record skipped: {why}", stacklevel=4)


def is_good(rec: dict) -> bool:
    return rec.get("status") == OK and bool(rec.get("verified")) and (rec.get("timing") or {}).get("median_ms")


def is_confirm(rec: dict) -> bool:
    """A record of the tuner's closing re-measurement (several interleaved rounds), not of the search."""
    return rec.get("strategy") == CONFIRM


def config_key(template: str, knobs: dict) -> str:
    """What makes two records measurements of the same kernel: the template and its knob values."""
    return template + " " + json.dumps(knobs, sort_keys=True, default=_jsonable)


class Group:
    """The good records of one (template, knobs) of one workload, possibly from several sessions and logs."""

    def __init__(self, template: str, knobs: dict):
        self.template, self.knobs = template, dict(knobs)
        self.samples: list = []          # (median_ms, record) of search records
        self.confirms: list = []         # (median_ms, record) of confirm records

    def add(self, rec: dict):
        (self.confirms if is_confirm(rec) else self.samples).append((rec["timing"]["median_ms"], rec))

    @property
    def confirmed(self) -> bool:
        return bool(self.confirms)

    @property
    def ms(self) -> float:
        """The robust time: the median of the confirm records' medians if any, else of every measurement."""
        return _median([m for m, _ in (self.confirms or self.samples)])

    def rank(self) -> tuple:
        return (not self.confirmed, self.ms)

    def record(self) -> dict:
        """The record that stands for the group: the one whose time is nearest the group's (confirm first)."""
        target = self.ms
        return min(self.confirms or self.samples, key=lambda mr: abs(mr[0] - target))[1]


def _median(values) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def groups(records) -> dict:
    """{config_key: Group} of the good records among `records`, in first-seen order."""
    out: dict = {}
    for r in records:
        if is_good(r):
            k = config_key(r["template"], r["knobs"])
            out.setdefault(k, Group(r["template"], r["knobs"])).add(r)
    return out


def choose(gs) -> "Group | None":
    """The group to use: confirmed groups before unconfirmed ones, then the lowest robust time."""
    gs = list(gs.values() if isinstance(gs, dict) else gs)
    return min(gs, key=Group.rank) if gs else None


def best(records) -> dict | None:
    """The record standing for the chosen (template, knobs) among `records` (see choose()), or None."""
    g = choose(groups(records))
    return g.record() if g else None


def best_per_part(layer, target, log=None, part_of=None, defaults=None) -> dict:
    """{part: (template, knobs)} chosen for each part of a kernel (choose()), for this workload and target key.
    A single-function kernel has one part (part_of=None: every record is of it).

    part_of(template name) -> the part a template schedules (None: ignore the record). defaults: {part:
    (default template, its default knobs)}. A multi-part record times a whole call with one part's candidate
    and every other part at its template defaults; a record of a part's default template at its defaults
    therefore measured the all-default configuration, and counts as a sample of every part's defaults
    (otherwise one noisy sample of the defaults per part decides: 128->128 global picked a delta candidate
    0.79x as fast as the defaults that way, 1 thread, AMD Zen 3, 2026-11)."""
    per_part: dict = {}

    def offer(part, template, knobs, rec):
        gs = per_part.setdefault(part, {})
        gs.setdefault(config_key(template, knobs), Group(template, knobs)).add(rec)

    defaults = defaults or {}
    for r in records_for(layer, target, log):
        if not is_good(r):
            continue
        part = part_of(r["template"]) if part_of else None
        if part_of and part is None:
            continue
        offer(part, r["template"], r["knobs"], r)
        if part in defaults and (r["template"], dict(r["knobs"])) == defaults[part]:
            for other, (tmpl, knobs) in defaults.items():
                if other != part and knobs is not None:
                    offer(other, tmpl, knobs, r)
    chosen = {part: choose(gs) for part, gs in per_part.items()}
    return {part: (g.template, dict(g.knobs)) for part, g in chosen.items()}


def ranked(layer, target, log=None) -> list[dict]:
    """This workload's verified records on this target key, one per (template, knobs), in the order choose()
    ranks their groups (confirmed first, then the robust time): what compile() tries until one builds."""
    gs = groups(records_for(layer, target, log)).values()
    return [g.record() for g in sorted(gs, key=Group.rank)]


def best_record(layer, target, log=None):
    """(template, knobs) chosen among the verified records for this workload on this target key, or None."""
    return best_per_part(layer, target, log).get(None)


def best_records(paths, warn: bool = True, target=None) -> dict:
    """{(workload_key, target_key): the record standing for the chosen group (choose())} over whole logs (a path
    or a list of paths, read in order), records of a changed template only where there is no other. With
    `target`, records of its key whose layer can be rebuilt are held to the same checks as records_for (illegal
    ones skipped)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    by_workload, checks = {}, {}
    for path in paths:
        for r in read(path, warn=warn):
            if not is_good(r):
                continue
            wk, fresh = r["workload_key"], current(r, warn=False)
            if target is not None and r["target"]["key"] == target.key and fresh:
                if wk not in checks:
                    layer = _rebuild(r)
                    checks[wk] = None if layer is None else _KnobCheck(layer, target)
                check = checks[wk]
                why = None if check is None else check.problem(r)
                if why:
                    if warn:
                        _warn_illegal(r, why)
                    continue
            fresh_and_stale = by_workload.setdefault((wk, r["target"]["key"]), ([], []))
            fresh_and_stale[0 if fresh else 1].append(r)
    # a record of the current template source beats a stale one
    return {k: best(fresh or stale) for k, (fresh, stale) in by_workload.items()}


def _rebuild(rec: dict):
    """The layer a record's workload key describes (its class from the layer registry), or None."""
    try:
        params = json.loads(rec["workload_key"])
        params.pop("layer", None)
        layer = registry.layer_class(rec["layer"])(**{k: tuple(v) if isinstance(v, list) else v
                                                        for k, v in params.items()})
    except Exception:       # a class this process lacks (a custom layer), or a key of an older layer version
        return None
    return layer if layer.workload_key == rec["workload_key"] else None


def make_record(layer, target, template: str, knobs: dict, status: str, *, timing: dict | None = None,
                rate: float | None = None, unit: str | None = None, error: str | None = None,
                build_s: float | None = None, measured_on: str = "local", strategy: str | None = None,
                session: str | None = None, trial: int | None = None, template_hash: str | None = None,
                confirm: dict | None = None) -> dict:
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
        **({"confirm": confirm} if confirm else {}),   # confirm records: rounds, round_ms, candidates, search
        "timestamp": time.time(),
    }
