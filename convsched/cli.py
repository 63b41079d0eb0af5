"""The `convsched` command.

    convsched tune conv2d h=56 w=56 cin=64 cout=64 --trials 64 --strategy auto --workers 2 --timeout 20
    convsched tune --suite resnet18 --trials 24
    convsched compile conv2d h=56 w=56 cin=64 cout=64 [--template T --knob co_tile=16 ...] [--describe]
    convsched export conv2d h=56 w=56 cin=64 cout=64 --out out/conv56
    convsched bench conv2d h=56 w=56 cin=64 cout=64        |  convsched bench --suite resnet18
    convsched show [--log PATH] [--plot best.png]
    convsched list layers | templates [KIND] | knobs LAYER k=v ... | suites | strategies
    convsched demo

LAYER is a layer kind (conv2d, pool2d, binary_conv2d, ...) or class name (Conv2d); k=v are its fields.
Values are read by the field's type (convsched/layers/params.py): integers, true/false (or 1/0, yes/no), none,
pairs as 1,2; `bias=Flase` or `h=5.5` is an error. Every user error prints `convsched: error: ...` and exits 2;
anything else is an internal error: one line, exit 1 (CONVSCHED_DEBUG=1 prints the traceback).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import traceback
import warnings

from . import records
from .errors import ConvschedError
from .kernel import compile
from .layers import Conv2d, registry
from .layers.params import parse_param, parse_value
from .schedule import get_template, list_templates
from .target import get as get_target
from .tune import tune
from .tune.space import SearchSpace
from .tune.strategies import STRATEGIES
from .tune.suites import SUITES, get_suite


def split_kv(items, what: str) -> dict:
    """{name: value text} of name=value arguments."""
    out = {}
    for it in items:
        if "=" not in it:
            raise ConvschedError(f"{what} '{it}' is not of the form name=value")
        k, v = it.split("=", 1)
        if not k.strip():
            raise ConvschedError(f"{what} '{it}' has no name before '='")
        out[k.strip()] = v.strip()
    return out


def make_layer(name: str, params: list):
    """A layer from its KIND or class name and name=value parameters (the layer registry)."""
    try:
        cls = registry.layer_class(name)
    except LookupError as e:
        raise ConvschedError(str(e)) from None
    texts = split_kv(params, "layer parameter")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in texts if k not in fields]
    if unknown:
        raise ConvschedError(f"{cls.__name__} has no parameter {', '.join(repr(u) for u in unknown)}; "
                             f"its parameters are: {', '.join(fields)}")
    try:
        return cls(**{k: parse_param(cls, k, v) for k, v in texts.items()})
    except (ValueError, TypeError) as e:
        raise ConvschedError(f"bad {cls.__name__} parameters: {e}") from None


def _layers_from(args) -> list:
    if getattr(args, "suite", None):
        if args.layer:
            raise ConvschedError("give a layer or --suite, not both")
        return get_suite(args.suite)
    if not args.layer:
        raise ConvschedError("give a layer (e.g. conv2d h=56 w=56 cin=64 cout=64) or --suite NAME")
    return [make_layer(args.layer, args.params)]


def _short(layer) -> str:
    d = {f.name: f.default for f in dataclasses.fields(layer)}
    parts = [f"{k}={v}" for k, v in layer.params().items() if v != d.get(k)]
    return f"{layer.KIND} " + " ".join(parts)


# ------------------------------------------------------------------------------------------------ commands
def cmd_tune(args):
    for layer in _layers_from(args):
        res = tune(layer, trials=args.trials, strategy=args.strategy, target=args.target, workers=args.workers,
                   timeout=args.timeout, log=args.log, templates=args.template or None,
                   rpc_tracker=args.rpc_tracker, rpc_key=args.rpc_key, progress=not args.quiet, seed=args.seed,
                   time_budget_s=args.time_budget, resume=not args.no_resume)
        print(res)
    return 0


def _compile(args, layer):
    texts = split_kv(args.knob or [], "knob")
    if texts and not args.template:
        args.template = layer.default_template()
    knobs = _knob_values(args.template, layer, get_target(args.target), texts) if texts else None
    return compile(layer, template=args.template, knobs=knobs, target=args.target, log=args.log)


def _knob_values(template: str, layer, target, texts: dict) -> dict:
    """Knob values from their text, read as the value of the knob's space that prints the same
    (`pack=none` is the string "none", `unroll_kw=true` the bool): unknown knobs and values outside the space
    are then reported by compile(), with the space."""
    space = get_template(template).knob_space(layer, target)
    out = {}
    for k, text in texts.items():
        same = [v for v in space.get(k, ()) if str(v).lower() == text.lower()]
        out[k] = same[0] if len(same) == 1 else parse_value(text)
    return out


def cmd_compile(args):
    layer = make_layer(args.layer, args.params)
    k = _compile(args, layer)
    print(f"# {layer}\n# target {k.target.key}")
    print(k.schedule.text())
    if args.describe:
        print(k.describe())
    xs = layer.random_inputs(0)
    why = layer.mismatch(k(*xs), layer.reference(*xs))
    print("matches the numpy reference" if why is None else f"DISAGREES with the numpy reference: {why}")
    if args.bench:
        print(k.benchmark())
    if args.export:
        _export(k, args.export)
    return 0 if why is None else 1


def _export(k, out):
    if not hasattr(k, "export"):
        raise ConvschedError(f"{type(k).__name__} kernels cannot be exported (several compiled parts and glue)")
    path = k.export(out)
    m = json.loads((path / "manifest.json").read_text())
    print(f"exported {k.layer} -> {path}/{m['library']}, {m['header']}, manifest.json  "
          f"(entry {m['kernels'][0]['entry']})")


def cmd_export(args):
    layer = make_layer(args.layer, args.params)
    _export(_compile(args, layer), args.out)
    return 0


def cmd_bench(args):
    tgt = get_target(args.target)
    rows = []
    for layer in _layers_from(args):
        rec = records.best_record(layer, tgt, args.log)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = compile(layer, target=tgt, log=args.log)
        t = k.benchmark(repeat=args.repeat)
        rows.append((_short(layer), "tuned" if rec else "default", k.schedule.template, t))
        print(f"{rows[-1][0]:<58} {rows[-1][1]:<8} {t.median_ms:9.3f} ms  {t.rate:8.1f} {t.unit}"
              + (f"  {t.pct_of_peak:4.0f}% of peak" if t.peak else ""), flush=True)
    return 0


def cmd_show(args):
    tgt = get_target(args.target)
    path = records.log_path(tgt, args.log)
    recs = records.read(path)
    if not recs:
        print(f"no records in {path}")
        return 0
    layer = make_layer(args.layer, args.params) if args.layer else None
    best = records.best_records(path, warn=True, target=tgt)
    print(f"{path}: {len(recs)} records, {len(best)} workloads with a verified record")
    for (wk, tk), r in sorted(best.items(), key=lambda kv: kv[0]):
        if layer is not None and wk != layer.workload_key:
            continue
        n = sum(1 for x in recs if x["workload_key"] == wk and (x.get("target") or {}).get("key") == tk)
        knobs = " ".join(f"{k}={v}" for k, v in sorted(r["knobs"].items()))
        stale = "" if records.current(r, warn=False) else "  [template changed: ignored]"
        print(f"- {r['layer']} {wk}\n    {n} trials; best {r['timing']['median_ms']:.3f} ms {r['rate']:.1f} "
              f"{r['unit']}: {r['template']} {knobs}  (target {tk}){stale}")
    if args.plot:
        _plot(recs, best, layer, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _plot(recs, best, layer, out):
    import matplotlib           # optional (the tune extra), and slow to import: only for --plot
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt   # after use("Agg"): no display needed
    fig, ax = plt.subplots(figsize=(8, 5))
    for (wk, tk) in best:
        if layer is not None and wk != layer.workload_key:
            continue
        ys, b = [], 0.0
        for r in recs:
            if r["workload_key"] == wk and (r.get("target") or {}).get("key") == tk:
                if records.is_good(r):
                    b = max(b, r["rate"])
                ys.append(b)
        label = best[(wk, tk)]["layer"] + " " + " ".join(
            f"{k}={v}" for k, v in sorted(json.loads(wk).items()) if k in ("h", "cin", "cout", "kh", "stride", "c"))
        ax.plot(range(1, len(ys) + 1), ys, label=label)
    ax.set_xlabel("trials")
    ax.set_ylabel("best so far (" + (next(iter(best.values()))["unit"] if best else "") + ")")
    ax.set_title("convsched tuning: best throughput so far")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def cmd_list(args):
    what = args.what
    if what == "layers":
        for name, cls in sorted(registry.by_name().items()):
            if name != cls.KIND:
                continue
            params = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
            print(f"{name:<20} {cls.__name__}({params})")
    elif what == "templates":
        for name in list_templates(args.layer):
            try:
                doc = (get_template(name).doc.splitlines() or [""])[0]
            except ConvschedError as e:     # one broken template file must not hide the others
                doc = f"BROKEN: {e}"
            print(f"{name:<32} {doc}")
    elif what == "knobs":
        if not args.layer:
            raise ConvschedError("list knobs needs a layer, e.g. `convsched list knobs conv2d h=56 cin=64`")
        layer, tgt = make_layer(args.layer, args.params), get_target(args.target)
        space = SearchSpace(layer, tgt)
        for name in space.names:
            t = space.templates[name]
            print(f"{name}  (defaults: {t.defaults(layer, tgt)})")
            for k, v in space.spaces[name].items():
                print(f"    {k:<14} {v}")
        for name, why in space.skipped.items():
            print(f"{name}  does not apply: {why}")
        print(f"legal points: {space.size()}")
    elif what == "suites":
        for name, fn in SUITES.items():
            print(f"{name}: " + "; ".join(_short(layer) for layer in fn()))
    elif what == "strategies":
        print("auto, " + ", ".join(STRATEGIES))
    return 0


def cmd_demo(args):
    layer = Conv2d(h=28, w=28, cin=32, cout=32)
    print(f"demo: tune {layer} for {args.trials} trials (log in a temporary directory)")
    with tempfile.TemporaryDirectory(prefix="convsched-demo-") as d:
        res = tune(layer, trials=args.trials, log=d, timeout=args.timeout)
        print(res)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            default = compile(layer, template=layer.default_template())
            tuned = compile(layer, log=d)
        td, tt = default.benchmark(), tuned.benchmark()
        print(f"default template: {td}\ntuned:            {tt}\nspeed-up {td.median_ms / tt.median_ms:.2f}x")
    return 0


# ------------------------------------------------------------------------------------------------ parser
def _positive(kind):
    """An argparse type: a positive int, or a positive finite float (`--timeout 0` would log every candidate
    as a timeout)."""
    def convert(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") \
                from None
        if not (v > 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return v
    convert.__name__ = f"positive {kind.__name__}"
    return convert


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convsched", description="Schedule, tune, compile and benchmark CPU "
                                "neural-net layers (Apache TVM).")
    sub = p.add_subparsers(dest="cmd", required=True)

    def layer_args(sp, suite=False):
        sp.add_argument("layer", nargs="?", help="layer kind (conv2d, pool2d, ...) or class name")
        sp.add_argument("params", nargs="*", help="layer parameters as name=value")
        if suite:
            sp.add_argument("--suite", help="a named suite of layers instead (see `convsched list suites`)")
        sp.add_argument("--target", default="host", help="host (default) or a named CPU: znver4, x86-64-v3, ...")
        sp.add_argument("--log", help="tuning log: a .jsonl file or a directory (default: shipped tuning_logs/)")

    t = sub.add_parser("tune", help="search schedules for a layer and log the measurements")
    layer_args(t, suite=True)
    t.add_argument("--trials", type=_positive(int), default=64)
    t.add_argument("--strategy", default="auto", help="auto, exhaustive, random, evolutionary")
    t.add_argument("--workers", type=_positive(int), default=None, help="parallel build processes (default: cores)")
    t.add_argument("--timeout", type=_positive(float), default=20.0,
                   help="seconds per build/run before a candidate is killed")
    t.add_argument("--template", action="append", help="only this template (repeatable)")
    t.add_argument("--rpc-tracker", help="host:port of a TVM RPC tracker: measure on its servers")
    t.add_argument("--rpc-key", help="the key the RPC servers registered under")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--time-budget", type=_positive(float), default=None, help="stop proposing after this many seconds")
    t.add_argument("--no-resume", action="store_true", help="re-measure candidates already in the log")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_tune)

    for name, fn, hlp in (("compile", cmd_compile, "compile a layer, check it against numpy, print its schedule"),
                          ("export", cmd_export, "compile a layer and export it (.so + C header + manifest)")):
        c = sub.add_parser(name, help=hlp)
        layer_args(c)
        c.add_argument("--template", help="template name (default: best tuning record, else the default)")
        c.add_argument("--knob", action="append", help="knob value as name=value (repeatable)")
        if name == "compile":
            c.add_argument("--describe", action="store_true", help="print the scheduled loop nest")
            c.add_argument("--bench", action="store_true", help="time it")
            c.add_argument("--export", metavar="DIR", help="also export it to DIR")
        else:
            c.add_argument("--out", required=True, help="output directory")
        c.set_defaults(fn=fn)

    b = sub.add_parser("bench", help="time a layer or a suite with its best tuned schedule (else the default)")
    layer_args(b, suite=True)
    b.add_argument("--repeat", type=_positive(int), default=15)
    b.set_defaults(fn=cmd_bench)

    s = sub.add_parser("show", help="best tuning records per workload; --plot: best so far vs trials")
    layer_args(s)
    s.add_argument("--plot", metavar="PNG", help="write a PNG of best-so-far throughput vs trials")
    s.set_defaults(fn=cmd_show)

    ls = sub.add_parser("list", help="layers, templates, knobs of a layer, suites, strategies")
    ls.add_argument("what", choices=["layers", "templates", "knobs", "suites", "strategies"])
    ls.add_argument("layer", nargs="?", help="layer kind (templates: filter; knobs: the layer)")
    ls.add_argument("params", nargs="*")
    ls.add_argument("--target", default="host")
    ls.set_defaults(fn=cmd_list)

    d = sub.add_parser("demo", help="tune a small conv for a few trials and compare with the default schedule")
    d.add_argument("--trials", type=_positive(int), default=12)
    d.add_argument("--timeout", type=_positive(float), default=30.0)
    d.set_defaults(fn=cmd_demo)
    return p


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line say what happened, not which line of convsched noticed."""
    return f"convsched: warning: {message}\n"


# What a user can cause by what they typed or pointed at (values, files, sizes): `convsched: error:`, exit 2.
USER_ERRORS = (ConvschedError, ValueError, OSError, MemoryError)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.formatwarning = _format_warning
            return args.fn(args)
    except KeyboardInterrupt:
        print("convsched: interrupted (records already measured are in the log)", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"convsched: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:          # a bug of ours: one line, unless asked for the traceback
        if os.environ.get("CONVSCHED_DEBUG"):
            traceback.print_exc()
        print(f"convsched: internal error: {type(e).__name__}: {e}\nplease report it with the command line"
              + ("" if os.environ.get("CONVSCHED_DEBUG") else " (CONVSCHED_DEBUG=1 prints the traceback)"),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
