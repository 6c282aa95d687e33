#!/usr/bin/env python3
"""Record a mailsim scenario on a real Postfix 3.7 and write the trace in mailsim's schema.

    sudo python3 validation/record.py tests/fidelity/greylisting/scenario.toml

writes tests/fidelity/greylisting/real/{queues.csv,deliveries.csv,summary.json,events.csv,
maillog,meta.json}. Needs root (it runs Postfix and adds nftables rules on loopback ports for
blackholes), Postfix and nft (validation/setup.sh installs both from Debian), and a built
mailsim (`cargo build --release`), which supplies the scenario's arrival instants.
See validation/README.md.
"""

import argparse
import asyncio
import gzip
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recorder import scenario as scen  # noqa: E402
from recorder import trace  # noqa: E402
from recorder.fake_smtp import FakeServer  # noqa: E402
from recorder.injector import Injector  # noqa: E402
from recorder.postfix_instance import PostfixInstance  # noqa: E402
from recorder.timeline import Clock, EventLog, SynDrop  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_PORT = 26001
SAMPLE_STEP = 0.5
# The longest a recording may run after its last arrival before it is cut off.
DRAIN_LIMIT = 3600.0


def mailsim_arrivals(mailsim, scenario_path, workdir):
    out = os.path.join(workdir, "mailsim")
    subprocess.run([mailsim, "run", scenario_path, "--out", out, "--no-plots"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(out, "deliveries.csv")


def choose_t0(qmgr_start, phase, period):
    """Scenario time 0: a whole system-clock second, `phase` seconds after a deferred-scan
    tick of the qmgr that started at `qmgr_start` (its timer ticks at floor(start) + k·period,
    events.c: timers are whole seconds of time()), at least 2 s from now."""
    grid = math.floor(qmgr_start)
    t0 = grid + phase
    while t0 < time.time() + 2:
        t0 += period
    return t0


async def sample_queues(pf, clock, samples, done, events):
    k = 0
    mtimes = {}
    while not done.is_set():
        await clock.sleep_until(k * SAMPLE_STEP)
        samples.append((k * SAMPLE_STEP, pf.queue_counts()))
        # Each deferred file's time stamp as first seen: the retry time qmgr set.
        for qid, mtime in pf.deferred_mtimes().items():
            if mtimes.get(qid) != mtime:
                mtimes[qid] = mtime
                events.log(clock.now(), "deferred", 0, "mtime", f"{qid} {mtime - clock.t0}")
        k += 1


async def wait_for_drain(pf, plan, clock, injected, samples):
    """Until every message was offered and the queue stayed empty for 2 s, or `stop`."""
    last_arrival = plan["messages"][-1][0] if plan["messages"] else 0.0
    limit = plan["stop"] if plan["stop"] is not None else last_arrival + DRAIN_LIMIT
    while clock.now() < limit:
        await asyncio.sleep(SAMPLE_STEP)
        if not injected.done() or len(samples) < 5:
            continue
        if all(sum(c.values()) == 0 for _, c in samples[-5:]):
            return
    print(f"stopped at {limit:.0f} s with mail still queued", file=sys.stderr)


async def record(plan, pf, t0, events, nft):
    clock = Clock(t0)
    ports = plan["ports"]
    servers = [FakeServer(d, ports[d["domain"]], plan["faults"].get(d["domain"], []), clock, events,
                          nft, seed=1000 + i) for i, d in enumerate(plan["destinations"])]
    for s in servers:
        await s.listen()
    fault_tasks = [asyncio.create_task(s.run_faults()) for s in servers]
    samples, done = [], asyncio.Event()
    sampler = asyncio.create_task(sample_queues(pf, clock, samples, done, events))
    injector = Injector(plan, clock, events)
    injected = asyncio.create_task(injector.run())
    await wait_for_drain(pf, plan, clock, injected, samples)
    end = clock.now()
    done.set()
    await sampler
    if not injected.done():
        injected.cancel()
    await injector.close()
    for t in fault_tasks:
        t.cancel()
    for s in servers:
        await s.shutdown()
    return samples, injector.arrivals, end


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--out", help="default: real/ next to the scenario")
    ap.add_argument("--mailsim", default=os.path.join(REPO, "target", "release", "mailsim"))
    ap.add_argument("--base", default="/var/lib/mailsim-recorder",
                    help="the throw-away Postfix instance's directory (wiped)")
    args = ap.parse_args()
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.scenario)), "real")
    os.makedirs(out, exist_ok=True)

    with tempfile.TemporaryDirectory() as work:
        try:
            plan = scen.load(args.scenario, mailsim_arrivals(args.mailsim, args.scenario, work))
        except scen.PlanError as e:
            sys.exit(f"{args.scenario}: {e}")
    plan["ports"] = {d["domain"]: FIRST_PORT + i for i, d in enumerate(plan["destinations"])}

    pf = PostfixInstance(args.base)
    nft = SynDrop()
    pf.configure(plan, plan["ports"])
    events_path = os.path.join(out, "events.csv")
    events = EventLog(events_path)
    try:
        nft.setup()
        # A qmgr that starts in the last 150 ms of a second may request its scan timer in the
        # next one; restart it until the whole second of its timer grid is unambiguous.
        for _ in range(20):
            qmgr_start = pf.start()
            if qmgr_start - math.floor(qmgr_start) < 0.85:
                break
            pf.stop()
        t0 = choose_t0(qmgr_start, plan["phase"], plan["queue_run_delay"])
        samples, arrivals, end = asyncio.run(record(plan, pf, t0, events, nft))
    finally:
        events.close()
        pf.stop()
        nft.teardown()

    with open(pf.maillog) as src, open(os.path.join(out, "maillog"), "w") as dst:
        dst.write(src.read())
    recipients, notice_rows = trace.parse(os.path.join(out, "maillog"), events_path, plan, arrivals, t0)
    trace.write_queues(os.path.join(out, "queues.csv"), samples)
    trace.write_deliveries(os.path.join(out, "deliveries.csv"), recipients)
    trace.write_json(os.path.join(out, "summary.json"),
                     trace.summary(plan, recipients, notice_rows, samples, end))
    trace.write_json(os.path.join(out, "meta.json"), {
        "scenario": os.path.relpath(os.path.abspath(args.scenario), REPO),
        "postfix_version": pf.version(),
        "kernel": platform.release(),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "qmgr_started_s": round(qmgr_start - t0, 3),
        "queue_run_delay_s": plan["queue_run_delay"],
        "sample_step_s": SAMPLE_STEP,
        "ports": plan["ports"],
    })
    # The evidence, compressed: the tests read only queues.csv, deliveries.csv and meta.json.
    for name in ("maillog", "events.csv"):
        path = os.path.join(out, name)
        with open(path, "rb") as src, gzip.open(path + ".gz", "wb", compresslevel=9) as dst:
            dst.write(src.read())
        os.remove(path)
    s = json.load(open(os.path.join(out, "summary.json")))
    print(f"{plan['name']}: {s['sent']} sent, {s['bounced']} bounced, {s['expired']} expired, "
          f"{s['queued_at_end']} queued; drain {s['drain_time_s']} s; peak deferred "
          f"{s['peak']['deferred']}; trace in {out}")


if __name__ == "__main__":
    main()
