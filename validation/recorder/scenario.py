"""Reads a mailsim scenario and turns it into a recording plan for a real Postfix.

The recorder plays the scenario file itself, so the simulation and the recording cannot
drift apart. Only what a loopback Postfix and a fake remote can reproduce is accepted; any
other key is refused with the key's name, rather than recorded as something it is not.
Arrival instants come from mailsim's own run of the scenario (its deliveries.csv), so the
real Postfix receives the same messages at the same times as the simulated one.
"""

import csv
import math
import re
import tomllib

UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0,
         "h": 3600.0, "d": 86400.0, "w": 604800.0}
POSTFIX_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PlanError(Exception):
    pass


def duration(text, what):
    m = re.fullmatch(r"\s*(-?)(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]*)\s*", str(text))
    if not m or m.group(3) not in UNITS:
        raise PlanError(f"{what}: `{text}` is not a duration (e.g. `200ms`, `5s`)")
    value = float(m.group(2)) * UNITS[m.group(3)]
    return -value if m.group(1) else value


def postfix_seconds(value, default_unit="s"):
    """A main.cf time value (integer + one unit letter) in seconds."""
    m = re.fullmatch(r"\s*(\d+)([smhdw]?)\s*", str(value))
    if not m:
        raise PlanError(f"`{value}` is not a Postfix time value")
    return int(m.group(1)) * POSTFIX_UNITS[m.group(2) or default_unit]


def latency(spec, what):
    """('fixed', s) | ('lognormal', mu, sigma) | ('exponential', mean) | ('uniform', lo, hi)."""
    if spec is None:
        return ("fixed", 0.0)
    if isinstance(spec, str):
        return ("fixed", duration(spec, what))
    if not isinstance(spec, dict):
        raise PlanError(f"{what}: unsupported latency {spec!r}")
    if spec.get("dist") == "exponential":
        return ("exponential", duration(spec["mean"], what))
    if "min" in spec and "max" in spec:
        return ("uniform", duration(spec["min"], what), duration(spec["max"], what))
    if "mean" in spec and "sd" in spec:
        mean, sd = duration(spec["mean"], what), duration(spec["sd"], what)
        if sd == 0:
            return ("fixed", mean)
        sigma2 = math.log(1 + (sd / mean) ** 2)
        return ("lognormal", math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
    raise PlanError(f"{what}: unsupported latency {spec!r}")


DEST_KEYS = {"domain", "latency", "greeting", "rcpt", "connect", "dns", "tempfail", "permfail",
             "greylist", "rate_limit", "max_connections", "spam", "transport"}
FAULT_KINDS = {"refuse", "blackhole", "mute", "tempfail"}


def destination(d, index):
    what = f"[[destination]] #{index + 1}"
    extra = set(d) - DEST_KEYS
    if extra:
        raise PlanError(f"{what}: the recorder cannot play {sorted(extra)} (no DNS or MX on loopback)")
    for key in ("connect", "dns"):
        if key in d and latency(d[key], f"{what}.{key}") != ("fixed", 0.0):
            raise PlanError(f"{what}.{key}: a loopback connection cannot be slowed; leave it out")
    if d.get("transport", "smtp") not in ("smtp", "relay"):
        raise PlanError(f"{what}.transport: only smtp and relay are recorded")
    gl = d.get("greylist", False)
    if gl is True:
        gl = {}
    elif isinstance(gl, str):
        gl = {"delay": gl}
    if gl is not False:
        gl = {
            "delay": int(duration(gl.get("delay", "300s"), what)),
            "retry_window": int(duration(gl.get("retry_window", "2d"), what)),
            "lifetime": int(duration(gl.get("lifetime", "35d"), what)),
            "auto_whitelist": int(gl.get("auto_whitelist", 5)),
        }
    rl = d.get("rate_limit")
    if rl is not None:
        rl = {"messages": rl.get("messages"), "connections": rl.get("connections"),
              "per": duration(rl["per"], what), "reply": str(rl.get("reply", "421"))}
    mc = d.get("max_connections")
    if isinstance(mc, int):
        mc = {"limit": mc, "excess": "421"}
    elif mc is not None:
        if "backlog" in mc:
            raise PlanError(f"{what}.max_connections.backlog: the kernel's listen queue is not scripted")
        mc = {"limit": int(mc["limit"]), "excess": mc.get("excess", "421")}
    spam = d.get("spam", {})
    return {
        "domain": d["domain"],
        "transport": d.get("transport", "smtp"),
        "latency": latency(d.get("latency", "500ms"), f"{what}.latency"),
        "greeting": latency(d.get("greeting"), f"{what}.greeting"),
        "rcpt": latency(d.get("rcpt"), f"{what}.rcpt"),
        "tempfail": float(d.get("tempfail", 0.0)),
        "permfail": float(d.get("permfail", 0.0)),
        "greylist": gl,
        "rate_limit": rl,
        "max_connections": mc,
        "spam": {"tempfail": float(spam.get("tempfail", 0.0)), "reject": float(spam.get("reject", 0.0))},
    }


def load(path, mailsim_deliveries):
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    # [host] tells the simulation how fast the recording host's Postfix hands requests to
    # its agents; the real host has its own speed, so the recorder has nothing to set.
    allowed = {"name", "description", "seed", "sample", "stop", "qmgr_start", "postfix",
               "master", "host", "traffic", "destination", "fault"}
    extra = set(raw) - allowed
    if extra:
        raise PlanError(f"{path}: the recorder cannot play {sorted(extra)}")
    postfix = {k: str(v) for k, v in raw.get("postfix", {}).items()}
    if "content_filter" in postfix:
        raise PlanError(f"{path}: [postfix] content_filter needs a filter the recorder does not run")
    qrd = postfix_seconds(postfix.get("queue_run_delay", "300s"))
    qmgr_start = raw.get("qmgr_start", "0s")
    phase = -duration(qmgr_start, "qmgr_start")
    if phase < 0 or phase != int(phase):
        raise PlanError("qmgr_start: the recorder needs whole seconds <= 0 (e.g. \"-3s\")")
    dests = [destination(d, i) for i, d in enumerate(raw.get("destination", []))]
    by_domain = {d["domain"]: d for d in dests}
    senders, sizes = set(), set()
    for i, t in enumerate(raw.get("traffic", [])):
        if t.get("submit", "smtp") != "smtp":
            raise PlanError(f"[[traffic]] #{i + 1}.submit: only smtp is recorded")
        for key in ("receive", "sender_retry", "sender_lifetime"):
            if key in t:
                raise PlanError(f"[[traffic]] #{i + 1}.{key}: not recorded")
        senders.add(t.get("from", "sender@example.org"))
        size = t.get("size", "10KB")
        if not isinstance(size, str):
            raise PlanError(f"[[traffic]] #{i + 1}.size: only a fixed size is recorded")
        sizes.add(size)
    if len(senders) > 1 or len(sizes) > 1:
        raise PlanError("[[traffic]]: the recorder needs one sender and one size for every stream")
    faults = {}
    for i, f in enumerate(raw.get("fault", [])):
        kind, target = f["kind"], f["target"]
        if kind not in FAULT_KINDS or target not in by_domain:
            raise PlanError(f"[[fault]] #{i + 1}: the recorder plays {sorted(FAULT_KINDS)} on a destination domain")
        start = duration(f["at"], "at")
        end = start + duration(f["for"], "for") if "for" in f else float("inf")
        faults.setdefault(target, []).append((start, end, kind, f.get("stage", "greeting")))
    return {
        "name": raw.get("name", "scenario"),
        "postfix": postfix,
        "master": {k: str(v) for k, v in raw.get("master", {}).items()},
        "queue_run_delay": qrd,
        "phase": int(phase),
        "stop": duration(raw["stop"], "stop") if "stop" in raw else None,
        "sample": duration(raw.get("sample", "10s"), "sample"),
        "destinations": dests,
        "faults": faults,
        "sender": senders.pop() if senders else "sender@example.org",
        "size": size_bytes(sizes.pop()) if sizes else 10_000,
        "messages": arrivals(mailsim_deliveries),
    }


def size_bytes(text):
    m = re.fullmatch(r"\s*(\d+)\s*(B|KB|KiB|MB|MiB)?\s*", text)
    if not m:
        raise PlanError(f"size `{text}`: write bytes, KB or MB")
    return int(m.group(1)) * {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 10**6, "MiB": 2**20}[m.group(2)]


def arrivals(deliveries_csv):
    """[(arrival_s, message_id, [recipients])] of traffic messages, in arrival order."""
    msgs = {}
    with open(deliveries_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row["destination"] == "local":  # Postfix's own notices, not traffic
                continue
            mid = int(row["message_id"])
            entry = msgs.setdefault(mid, [float(row["arrival_s"]), mid, []])
            entry[2].append(row["recipient"])
    return sorted((tuple(m) for m in msgs.values()), key=lambda m: (m[0], m[1]))
