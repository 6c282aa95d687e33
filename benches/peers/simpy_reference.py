#!/usr/bin/env python3
"""The issue-7 reference model in SimPy, for a side-by-side speed comparison with mailsim.

Same scenario as scenarios/bench-reference.toml, reduced to what a SimPy model of it
would hold: Poisson arrivals at 100 msg/s for ARRIVAL_HOURS, one recipient each; 20
concurrent deliveries (a simpy.Resource of capacity 20, first come first served); each
delivery takes a lognormal time with mean 0.5 s and sd 0.3 s and fails temporarily with
probability 0.2; a failed message waits Postfix's backoff, clamp(age, 300 s, 4000 s),
then for the next deferred-queue scan (a tick every 300 s; due when its time stamp is at
most one second ahead, as in qmgr), and expires when it is 5 days old at a failure.

Not modelled (mailsim has them): the active queue limit, in_flow_delay, qmgr's
scheduling order, the SMTP phases, whole-second time stamps. The point is the cost of a
general-purpose process-based engine on the same traffic, not fidelity.

Prints one JSON line: messages, delivered, expired, attempts, the mean delay of delivered
messages, SimPy events scheduled, wall and CPU seconds, and simulated messages per second
of each.
"""

import argparse
import json
import math
import random
import time

import simpy

RATE = 100.0  # messages per second
SERVERS = 20
MEAN, SD = 0.5, 0.3  # lognormal delivery time, seconds
TEMPFAIL = 0.2
MIN_BACKOFF, MAX_BACKOFF = 300.0, 4000.0
SCAN = 300.0  # queue_run_delay
LIFETIME = 5 * 86400.0  # maximal_queue_lifetime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrival-hours", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    sigma2 = math.log(1.0 + (SD * SD) / (MEAN * MEAN))
    mu, sigma = math.log(MEAN) - sigma2 / 2.0, math.sqrt(sigma2)
    horizon = args.arrival_hours * 3600.0
    stats = {"messages": 0, "delivered": 0, "expired": 0, "attempts": 0, "delay_sum": 0.0}

    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=SERVERS)

    def message(created):
        while True:
            with servers.request() as req:
                yield req
                stats["attempts"] += 1
                yield env.timeout(rng.lognormvariate(mu, sigma))
            if rng.random() >= TEMPFAIL:
                stats["delivered"] += 1
                stats["delay_sum"] += env.now - created
                return
            age = env.now - created
            if age >= LIFETIME:
                stats["expired"] += 1
                return
            due = env.now + min(max(age, MIN_BACKOFF), MAX_BACKOFF)
            # The first scan tick at which the file is due (time stamp <= tick + 1 s).
            tick = math.ceil((due - 1.0) / SCAN) * SCAN
            yield env.timeout(max(tick - env.now, 0.0))

    def arrivals():
        while True:
            yield env.timeout(rng.expovariate(RATE))
            if env.now >= horizon:
                return
            stats["messages"] += 1
            env.process(message(env.now))

    env.process(arrivals())
    started, cpu_started = time.perf_counter(), time.process_time()
    env.run()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    events = next(env._eid)  # SimPy's event counter (an internal, read once at the end)
    print(
        json.dumps(
            {
                "engine": "simpy " + simpy.__version__,
                "arrival_hours": args.arrival_hours,
                "messages": stats["messages"],
                "delivered": stats["delivered"],
                "expired": stats["expired"],
                "attempts": stats["attempts"],
                "mean_delay_s": round(stats["delay_sum"] / max(stats["delivered"], 1), 3),
                "end_time_s": round(env.now, 3),
                "simpy_events": events,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "messages_per_wall_s": round(stats["messages"] / wall, 1),
                "messages_per_cpu_s": round(stats["messages"] / max(cpu, 1e-9), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
