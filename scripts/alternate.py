#!/usr/bin/env python3
"""Times one runner workload under several allocator configurations, alternated.

    scripts/alternate.py [--rounds N] [--workload-bin PATH] WORKLOAD SCALE CONFIG [CONFIG ...]

CONFIG is NAME=LIB[:OPTIONS[:VAR=VALUE]]:
  LIB      a shared library to preload (`none`: the system malloc), e.g.
           target/release/librseqmalloc.so or /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
  OPTIONS  RSEQMALLOC_OPTIONS for that configuration (may be empty)
  VAR=VALUE one more environment variable (for scratch builds' experiment switches)
OPTIONS cannot contain ':', and only one extra variable can be given.

Each round runs every configuration once, in an order shuffled per round, so the host's slow
and fast phases fall on all of them alike. Prints, per configuration, the median wall time,
the median CPU time (user + system of the child), and the median of the per-round ratios of
its wall time to the first configuration's, with the 10th-90th percentile of those ratios:
a difference is resolved only when that range lies wholly on one side of 1.

The workload binary is the benchmark runner's (`cargo build --release -p rseqmalloc-bench`);
its scales are the runner's (`bench-runner/src/lib.rs`, `default_scale`).
"""
import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time


def parse_config(text):
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        sys.exit(f"alternate.py: a configuration is NAME=LIB[:OPTIONS[:VAR=VALUE]], not {text!r}")
    lib, _, rest = rest.partition(":")
    options, _, extra = rest.partition(":")
    # The caller's environment without an allocator of its own, then this configuration's.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "RSEQMALLOC_OPTIONS")}
    if lib != "none":
        lib = os.path.abspath(lib)
        if not os.path.exists(lib):
            sys.exit(f"alternate.py: {lib}: no such library")
        env["LD_PRELOAD"] = lib
    if options:
        env["RSEQMALLOC_OPTIONS"] = options
    if extra:
        var, sep, value = extra.partition("=")
        if not sep or not var:
            sys.exit(f"alternate.py: the extra variable is VAR=VALUE, not {extra!r}")
        env[var] = value
    return name, env


def tenth_to_ninetieth(sorted_values):
    """The 10th and 90th percentiles, symmetric: as many values left out at each end."""
    k = int(0.1 * len(sorted_values))
    return sorted_values[k], sorted_values[len(sorted_values) - 1 - k]


def run_once(binary, workload, scale, env, name):
    """One run; exits with a message (and no table) if it fails or its preload did not load."""
    try:
        done = subprocess.run(
            [binary, workload, scale],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as e:
        sys.exit(f"alternate.py: cannot run {binary}: {e}")
    if "cannot be preloaded" in done.stderr:
        sys.exit(f"alternate.py: {name}: the library was not preloaded:\n{done.stderr.strip()}")
    if done.returncode != 0:
        sys.exit(
            f"alternate.py: {name}: {workload} exited with {done.returncode}:\n{done.stderr.strip()}"
        )


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_bin = os.path.join(here, "..", "target", "release", "rseqmalloc-workload")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    ap.add_argument("--workload-bin", default=default_bin, help="the runner's workload binary")
    ap.add_argument("workload")
    ap.add_argument("scale")
    ap.add_argument("config", nargs="+")
    args = ap.parse_args()
    if args.rounds < 1:
        sys.exit("alternate.py: --rounds must be at least 1")
    if not os.access(args.workload_bin, os.X_OK):
        sys.exit(
            f"alternate.py: no workload binary at {args.workload_bin} "
            "(cargo build --release -p rseqmalloc-bench)"
        )
    configs = [parse_config(c) for c in args.config]
    names = [n for n, _ in configs]
    if len(set(names)) != len(names):
        sys.exit("alternate.py: configuration names must differ")
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for _ in range(args.rounds):
        order = configs[:]
        random.shuffle(order)
        for name, env in order:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            run_once(args.workload_bin, args.workload, args.scale, env, name)
            wall[name].append((time.perf_counter() - start) * 1000)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            cpu[name].append(used * 1000)
    base = names[0]
    print(f"{args.workload} at scale {args.scale}, {args.rounds} alternated rounds")
    for name in names:
        ratios = sorted(a / b for a, b in zip(wall[name], wall[base]))
        low, high = tenth_to_ninetieth(ratios)
        print(
            f"{name:14s} wall {statistics.median(wall[name]):8.1f} ms"
            f"  cpu {statistics.median(cpu[name]):8.1f} ms"
            f"  /{base} {statistics.median(ratios):.3f}"
            f" [{low:.3f}-{high:.3f}]"
        )


if __name__ == "__main__":
    main()
