"""The recording's clock, its event log and the SYN-drop rules that make a blackhole.

Scenario time 0 (`t0`) is a whole second of the system clock, so that the whole-second clock
qmgr decides with (`time()`) ticks at the same instants as the simulator's whole-second clock.
"""

import asyncio
import csv
import subprocess
import time


class Clock:
    def __init__(self, t0):
        self.t0 = t0

    def now(self):
        """Scenario seconds."""
        return time.time() - self.t0

    async def sleep_until(self, t):
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


class EventLog:
    """What the fake servers and the injector saw, in scenario seconds (events.csv)."""

    def __init__(self, path):
        self.file = open(path, "w", newline="")
        self.csv = csv.writer(self.file)
        self.csv.writerow(["time_s", "site", "conn", "event", "detail"])

    def log(self, t, site, conn, event, detail):
        self.csv.writerow([f"{t:.6f}", site, conn, event, detail])

    def close(self):
        self.file.close()


class SynDrop:
    """nftables rules dropping SYNs to chosen loopback ports: a blackholed host, whose
    connects time out (smtp_connect_timeout) instead of being refused."""

    TABLE = "mailsim_recorder"

    def __init__(self):
        self.handles = {}
        self.ready = False

    def _nft(self, *args):
        return subprocess.run(["nft", *args], check=True, capture_output=True, text=True)

    def setup(self):
        self.teardown()
        self._nft("add", "table", "inet", self.TABLE)
        self._nft(
            "add", "chain", "inet", self.TABLE, "input",
            "{ type filter hook input priority 0; policy accept; }",
        )
        self.ready = True

    def drop(self, port):
        if port in self.handles:
            return
        out = self._nft(
            "--echo", "--handle", "add", "rule", "inet", self.TABLE, "input",
            "ip", "daddr", "127.0.0.1", "tcp", "dport", str(port), "tcp", "flags", "syn", "drop",
        ).stdout
        self.handles[port] = out.rsplit("# handle", 1)[1].strip()

    def undrop(self, port):
        handle = self.handles.pop(port, None)
        if handle is not None:
            self._nft("delete", "rule", "inet", self.TABLE, "input", "handle", handle)

    def teardown(self):
        subprocess.run(["nft", "delete", "table", "inet", self.TABLE], capture_output=True)
        self.handles.clear()
        self.ready = False
