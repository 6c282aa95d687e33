"""Turns a recording (Postfix's maillog, the recorder's events, the queue samples) into the
files `mailsim run` writes, with the same columns: queues.csv, deliveries.csv, summary.json.

Statuses and attempt counts come from Postfix's own log lines (postfix-model.md §8.1):
- `postfix/smtp` (or `postfix/<service>/smtp`) `to=<r>, … status=S`: one delivery attempt;
- `postfix/error` `status=deferred (delivery temporarily suspended: …)`: qmgr's deferral of
  mail for a dead destination through the retry service — not an attempt (as in mailsim);
- `postfix/qmgr` `status=expired, returned to sender`: every pending recipient expired.
Postfix stamps its log in whole seconds, so the instants come from the recorder's own clock
where it saw them: arrival when the injector sent MAIL FROM, delivery when the fake server
answered 250 after DATA, a bounce when it answered 5xx. Expiry has only the log's second.
"""

import csv
import json
import math
import re
import time

LINE = re.compile(r"^(\w{3} +\d+ \d\d:\d\d:\d\d) \S+ (postfix[^\[]*)\[\d+\]: (.*)$")
STATUS = re.compile(r"^([0-9A-F]+): to=<([^>]*)>,.* status=(\w+)")
MSGID = re.compile(r"^([0-9A-F]+): message-id=<mailsim\.(\d+)@recorder\.invalid>")
NOTICE = re.compile(r"^([0-9A-F]+): sender (?:non-delivery|delay) notification: ([0-9A-F]+)")
EXPIRED = re.compile(r"^([0-9A-F]+): from=<[^>]*>, status=(?:force-)?expired")


def log_time(stamp, t0):
    """A log stamp (`Dec 01 22:27:50`, local time, no year) in scenario seconds."""
    year = time.localtime(t0).tm_year
    t = time.mktime(time.strptime(f"{year} {stamp}", "%Y %b %d %H:%M:%S"))
    if t - t0 > 180 * 86400:  # the recording crossed new year backwards
        t = time.mktime(time.strptime(f"{year - 1} {stamp}", "%Y %b %d %H:%M:%S"))
    return t - t0


class Recipient:
    __slots__ = ("mid", "address", "domain", "arrival", "attempts", "status", "finished",
                 "deferrals", "suspended")

    def __init__(self, mid, address, arrival):
        self.mid, self.address, self.arrival = mid, address, arrival
        self.domain = address.rsplit("@", 1)[1]
        self.attempts = self.deferrals = self.suspended = 0
        self.status, self.finished = "queued", None


def parse(maillog_path, events_path, plan, arrivals, t0):
    rcpts = {}
    for _, mid, addresses in plan["messages"]:
        for a in addresses:
            rcpts[a] = Recipient(mid, a, arrivals.get(mid))
    accepted, rejected = {}, {}
    with open(events_path, newline="") as f:
        for row in csv.DictReader(f):
            t = float(row["time_s"])
            if row["event"] == "accepted":
                _, address = row["detail"].split(" ", 1)
                accepted.setdefault(address, []).append(t)
            elif row["event"] == "rcpt-reply" and row["detail"].split(" ", 2)[1].startswith("5"):
                rejected.setdefault(row["detail"].split(" ", 1)[0], []).append(t)
    qid_to_mid, notices, notice_rows = {}, set(), []
    for line in open(maillog_path, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        stamp, program, text = m.groups()
        if (mm := MSGID.match(text)):
            qid_to_mid[mm.group(1)] = int(mm.group(2))
        elif (mm := NOTICE.match(text)):
            notices.add(mm.group(2))
        elif (mm := EXPIRED.match(text)) and program == "postfix/qmgr":
            mid = qid_to_mid.get(mm.group(1))
            for r in rcpts.values():
                if r.mid == mid and r.status == "queued":
                    r.status, r.finished = "expired", log_time(stamp, t0)
        elif (mm := STATUS.match(text)):
            qid, address, status = mm.groups()
            if qid in notices:
                notice_rows.append((qid, address, status, log_time(stamp, t0)))
                continue
            r = rcpts.get(address)
            if r is None or qid_to_mid.get(qid) != r.mid:
                continue
            agent = program.rsplit("/", 1)[1]
            if agent == "smtp":
                r.attempts += 1
                if status == "deferred":
                    r.deferrals += 1
            elif agent == "error" and status == "deferred":
                r.suspended += 1
            if status in ("sent", "bounced"):
                when = log_time(stamp, t0)
                precise = accepted if status == "sent" else rejected
                seen = [t for t in precise.get(address, []) if t <= when + 1.0]
                r.status, r.finished = status, (seen[-1] if seen else when)
    return list(rcpts.values()), notice_rows


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = min(max(math.ceil(p * len(sorted_values)), 1), len(sorted_values))
    return sorted_values[rank - 1]


def delay_stats(values):
    v = sorted(values)
    return {
        "count": len(v),
        "mean": round(sum(v) / len(v), 6) if v else None,
        "p50": round6(percentile(v, 0.50)),
        "p95": round6(percentile(v, 0.95)),
        "p99": round6(percentile(v, 0.99)),
        "max": round6(v[-1] if v else None),
    }


def round6(x):
    return None if x is None else round(x, 6)


def write_deliveries(path, recipients):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["message_id", "recipient", "destination", "arrival_s", "finished_s",
                    "delay_s", "attempts", "status"])
        for r in sorted(recipients, key=lambda r: (r.mid, r.address)):
            done = r.finished is not None
            w.writerow([r.mid, r.address, r.domain, f"{r.arrival:.6f}",
                        f"{r.finished:.6f}" if done else "",
                        f"{r.finished - r.arrival:.6f}" if done else "", r.attempts, r.status])


def write_queues(path, samples):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["time_s", "maildrop", "incoming", "active", "deferred", "hold"])
        for t, c in samples:
            w.writerow([f"{t:g}", c["maildrop"], c["incoming"], c["active"], c["deferred"], c["hold"]])


def summary(plan, recipients, notice_rows, samples, end_time):
    by = lambda s: sum(1 for r in recipients if r.status == s)
    finals = [r.finished for r in recipients if r.finished is not None]
    first_arrival = min(r.arrival for r in recipients) if recipients else None
    destinations = []
    for d in plan["destinations"]:
        mine = [r for r in recipients if r.domain == d["domain"]]
        destinations.append({
            "domain": d["domain"],
            "sent": sum(1 for r in mine if r.status == "sent"),
            "bounced": sum(1 for r in mine if r.status == "bounced"),
            "expired": sum(1 for r in mine if r.status == "expired"),
            "queued_at_end": sum(1 for r in mine if r.status == "queued"),
            "delay_s": delay_stats([r.finished - r.arrival for r in mine if r.status == "sent"]),
        })
    peak = {q: max((c[q] for _, c in samples), default=0)
            for q in ("maildrop", "incoming", "active", "deferred", "hold")}
    return {
        "scenario": plan["name"],
        "messages": len(plan["messages"]),
        "recipients": len(recipients),
        "notices": len({qid for qid, *_ in notice_rows}),
        "sent": by("sent"),
        "bounced": by("bounced"),
        "expired": by("expired"),
        "deleted": 0,
        "queued_at_end": by("queued"),
        "attempts": sum(r.attempts for r in recipients),
        "deferrals": sum(r.deferrals for r in recipients),
        "suspended_deferrals": sum(r.suspended for r in recipients),
        "drain_time_s": round6(max(finals) - first_arrival) if finals else None,
        "end_time_s": round6(end_time),
        "delay_s": delay_stats([r.finished - r.arrival for r in recipients if r.status == "sent"]),
        "destinations": destinations,
        "peak": peak,
    }


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
