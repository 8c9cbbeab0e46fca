"""bench_fanout.py's report: one line per run, the median table of the target points,
memory per watcher, the 60,000-seat snapshot and the verdicts against the targets."""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

TARGETS = {
    "ratio": 0.8,  # full deliveries/s >= 0.8 x bare broadcast at 10k watchers
    "p99_5k_hi_ms": 150.0,  # 5,000 watchers at 50 changes/s
    "p99_max_lo_ms": 250.0,  # 10,000 watchers at 20 changes/s
    "kb_per_watcher": 30.0,
    "snapshot_bytes": 256 * 1024,
    "snapshot_ms": 50.0,
}


def fmt_run(r: dict[str, Any]) -> str:
    def ms(x: Any) -> str:
        return "-" if x is None else f"{x:.0f}"

    rs = r.get("redis_sub") or {}
    return (
        f"  {r['target']:<8} {r['watchers']:>6} w {r['rate']:>4.0f}/s {r['seconds']:>3.0f}s | "
        f"p50/p95/p99 {ms(r['p50_ms'])}/{ms(r['p95_ms'])}/{ms(r['p99_ms'])} ms | "
        f"{r['deliveries_s']:>8.0f} frames/s {r['change_deliveries_s']:>8.0f} changes/s "
        f"({r['frames_per_watcher_s']:.1f}/w/s, {r['avg_frame_bytes']:.0f} B) | "
        f"missing {r['missing']} dupes {r['dupes']} stale frames {r['stale_frames']} "
        f"resyncs {r['resyncs']} closed {r['closed']}"
        f" notconv {r['not_converged']} | server CPU {r['server_cpu_pct']:.0f}% tool "
        f"{r['tool_cpu_pct']:.0f}% cores {'/'.join(f'{c:.0f}' for c in r['cores_pct'])} "
        f"load {r['loadavg'][0]}"
        + (
            f" | sent {r['changes_sent']} redis-sub p50/p99 {ms(rs.get('p50_ms'))}/"
            f"{ms(rs.get('p99_ms'))} ms"
            if r["target"] == "full"
            else ""
        )
        + (f" | driver fail {r['driver']['failures']}" if r["driver"].get("failures") else "")
        + (
            f" | outbox left {r['outbox_left']}, relay lines {r['relayed']} ok"
            f" {r['relay_failed']} failed"
            if r.get("relayed") or r.get("relay_failed") or r.get("outbox_left")
            else ""
        )
    )


def med(values: list[Any]) -> Any:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def report(
    args: argparse.Namespace, res: dict[str, Any], info: dict[str, Any], watcher_procs: int
) -> dict[str, Any]:
    """Prints the run's table, memory, snapshot and verdicts; the figures as a dict."""
    runs = [r for r in res["runs"] if not r.get("warmup")]
    lines: list[str] = []
    w = lines.append
    w("")
    w("=" * 100)
    w(
        "fan-out benchmark: one `modex serve` (CPU 0) vs bare websockets.broadcast(); "
        f"median of {args.runs} run(s)"
    )
    w("=" * 100)

    def key(target: str, name: str) -> dict[str, Any]:
        group = [r for r in runs if r["target"] == target and r.get("key") == name]
        if not group:
            return {}
        out = {
            f: med([r[f] for r in group])
            for f in ("watchers", "rate", "p50_ms", "p95_ms", "p99_ms", "deliveries_s",
                      "change_deliveries_s", "frames_per_watcher_s", "avg_frame_bytes",
                      "missing", "dupes", "stale_frames", "resyncs", "closed", "not_converged",
                      "server_cpu_pct", "tool_cpu_pct")
        }  # fmt: skip
        out["redis_p99_ms"] = med([(r.get("redis_sub") or {}).get("p99_ms") for r in group])
        out["redis_p50_ms"] = med([(r.get("redis_sub") or {}).get("p50_ms") for r in group])
        out["n"] = len(group)
        return out

    table: dict[str, dict[str, dict[str, Any]]] = {}
    w(
        f"{'point':<26}{'target':<9}{'p50':>6}{'p95':>6}{'p99':>7}{'frames/s':>10}"
        f"{'changes/s':>11}{'B/frame':>8}{'miss':>6}{'dup':>5}{'resync':>7}{'srvCPU':>7}"
        f"{'toolCPU':>8}{'redis p99':>10}"
    )
    for name, label in (
        ("hi", "5k-ish @ rate-hi"),
        ("max_lo", "max @ rate"),
        ("max_hi", "max @ rate-hi"),
    ):
        for target in ("full", "baseline"):
            k = key(target, name)
            if not k:
                continue
            table.setdefault(name, {})[target] = k

            def f(x: Any, d: int = 0) -> str:
                return "-" if x is None else f"{x:.{d}f}"

            w(
                f"{label + ' ' + str(int(k['watchers'])) + 'w ' + str(int(k['rate'])) + '/s':<26}"
                f"{target:<9}{f(k['p50_ms']):>6}{f(k['p95_ms']):>6}{f(k['p99_ms']):>7}"
                f"{f(k['deliveries_s']):>10}{f(k['change_deliveries_s']):>11}"
                f"{f(k['avg_frame_bytes']):>8}{f(k['missing']):>6}{f(k['dupes']):>5}"
                f"{f(k['resyncs']):>7}{f(k['server_cpu_pct']):>6}%{f(k['tool_cpu_pct']):>7}%"
                f"{f(k['redis_p99_ms']):>10}"
            )
    w("")
    w("step-up (one run per step at --rate):")
    for r in runs:
        if r.get("step"):
            w(fmt_run(r))
    w("")
    # memory
    mem: dict[str, Any] = {}
    for target, points in res.get("rss_idle", {}).items():
        pts = sorted((int(k), v) for k, v in points.items())
        base = dict(pts)[0]
        slope = {n: (v - base) / n / 1024 for n, v in pts if n}
        mem[target + " idle"] = {
            "points_mb": {n: v / 2**20 for n, v in pts},
            "kb_per_watcher": slope,
        }
        w(
            f"server RSS {target} idle (fresh process, no change ever sent): "
            + ", ".join(f"{n}: {v / 2**20:.1f} MB" for n, v in pts)
        )
        w("   KB per idle watcher over 0: " + ", ".join(f"{n}w {s:.1f}" for n, s in slope.items()))
    for target, points in res["rss"].items():
        pts = sorted((int(k), v) for k, v in points.items())
        base = dict(pts).get(0)
        if base is None:
            continue
        desc = ", ".join(f"{n}: {v / 2**20:.0f} MB" for n, v in pts)
        slope = {}
        for n in (1000, 5000):
            if n in dict(pts):
                slope[n] = (dict(pts)[n] - base) / n / 1024
        mem[target] = {"points_mb": {n: v / 2**20 for n, v in pts}, "kb_per_watcher": slope}
        w(f"server RSS {target:<8} during the step-up (after runs): {desc}")
        w("   KB per idle watcher over 0: " + ", ".join(f"{n}w {s:.1f}" for n, s in slope.items()))
    w("")
    snap = res.get("snapshot", {})
    if snap:
        w(
            f"60,000-seat snapshot: rle frame {snap['rle_bytes']} B "
            f"(target < {TARGETS['snapshot_bytes']}), subscribe->frame end to end "
            f"{snap['rle_e2e_ms']:.1f} ms (cold {snap['rle_e2e_cold_ms']:.1f} ms), "
            f"snapshot_frame() build {snap['rle_build_ms']:.1f} ms "
            f"(target < {TARGETS['snapshot_ms']:.0f}); mixed map (1/7 held, 1/5 booked): "
            f"{snap['rle_mixed_bytes']} B in {snap['rle_mixed_build_ms']:.1f} ms; plain frame "
            f"{snap['plain_bytes']} B, build {snap['plain_build_ms']:.1f} ms, "
            f"e2e {snap['plain_e2e_ms']:.1f} ms"
        )
    w("")
    # verdicts
    verdicts = []
    full_max = table.get("max_hi", table.get("hi", {}))
    if full_max.get("full") and full_max.get("baseline"):
        fb, bb = full_max["full"], full_max["baseline"]
        ratio_frames = fb["deliveries_s"] / bb["deliveries_s"] if bb["deliveries_s"] else 0
        ratio_changes = (
            fb["change_deliveries_s"] / bb["change_deliveries_s"]
            if bb["change_deliveries_s"]
            else 0
        )
        verdicts.append(
            f"deliveries at {int(fb['watchers'])} watchers, {int(fb['rate'])}/s: full/bare "
            f"frames/s {ratio_frames:.2f}, seat changes delivered/s {ratio_changes:.2f} "
            f"(target >= {TARGETS['ratio']})"
        )
        res["ratio_frames"], res["ratio_changes"] = ratio_frames, ratio_changes
    for point, target in (("hi", "p99_5k_hi_ms"), ("max_lo", "p99_max_lo_ms")):
        k = table.get(point, {}).get("full")
        if k:
            ok = k["p99_ms"] is not None and k["p99_ms"] < TARGETS[target]
            verdicts.append(
                f"p99 {int(k['watchers'])} watchers @ {int(k['rate'])}/s: {k['p99_ms']} ms "
                f"(target < {TARGETS[target]:.0f}) {'MEETS' if ok else 'MISSES'}"
            )
    mkey = "full idle" if "full idle" in mem else "full"
    if mkey in mem and mem[mkey]["kb_per_watcher"]:
        kb = mem[mkey]["kb_per_watcher"]
        meets = max(kb.values()) < TARGETS["kb_per_watcher"]
        per = ", ".join(f"{n}w {v:.1f} KB" for n, v in kb.items())
        verdicts.append(
            f"server memory per idle watcher ({mkey}): {per} "
            f"(target < {TARGETS['kb_per_watcher']:.0f}) {'MEETS' if meets else 'MISSES'}"
        )
    if snap:
        ok = (
            snap["rle_bytes"] < TARGETS["snapshot_bytes"]
            and snap["rle_build_ms"] < TARGETS["snapshot_ms"]
        )
        verdicts.append(
            f"60k snapshot: {snap['rle_bytes']} B, built in {snap['rle_build_ms']:.1f} ms "
            f"{'MEETS' if ok else 'MISSES'}"
        )
    for v in verdicts:
        w("  * " + v)
    tool_max = max((r["tool_cpu_pct"] for r in runs), default=0)
    w("")
    w(
        f"load tool: {watcher_procs} watcher "
        f"process(es) on CPU 1, peak {tool_max:.0f}% of a core"
        + (
            " -- over 70%: SATURATED, latencies include the tool's queueing"
            if tool_max > 70
            else " (< 70%)"
        )
    )
    v = info["versions"]
    w("versions: " + ", ".join(f"{k} {v[k]}" for k in v))
    c = info["cpu"]
    w(
        f"app code measured: HEAD {info['git']['head']}; uncommitted in app/ sql/: "
        f"{info['git']['uncommitted'] or 'none'}"
    )
    w(f"cpu: {c['model']}, {c['cpus']} CPUs; load average before {c['loadavg_before']}, "
      f"after {[round(x, 2) for x in os.getloadavg()]}")  # fmt: skip
    for note in res["notes"]:
        w("note: " + note)
    print("\n".join(lines), flush=True)
    res["table"] = table
    res["memory"] = mem
    res["verdicts"] = verdicts
    return res
