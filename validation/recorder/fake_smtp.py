"""A scriptable remote SMTP server for one [[destination]] of a mailsim scenario.

It answers Postfix's smtp(8) client on 127.0.0.1:<port> with the behaviour the scenario gives
the destination, using the same rules as mailsim's world model (src/world/server.rs,
greylist.rs, rate_limit.rs, connections.rs) so that a recording and a simulation play the same
remote: phase latencies, per-recipient 4xx/5xx probabilities, postgrey-style greylisting,
token-bucket rate limits, a concurrent-connection cap with its excess policy, and the
connection-level faults refuse / blackhole / mute / tempfail on the scenario's timeline.

Every transaction step is written to the recorder's event log with the recorder's clock, which
is finer than Postfix's whole-second log stamps.
"""

import asyncio
import random

from .timeline import Clock


class TokenBucket:
    """n tokens refilled at n per `per` seconds, starting full (GCRA form, as rate_limit.rs)."""

    def __init__(self, n, per):
        self.n = max(1, n)
        self.per = per
        self.tat = float("-inf")

    def available(self, t):
        return t * self.n >= self.tat - (self.n - 1) * self.per

    def take(self, t):
        if not self.available(t):
            return False
        self.tat = max(self.tat, t * self.n) + self.per
        return True


class Greylist:
    """postgrey's policy for one client (our host), as src/world/greylist.rs states it."""

    AWL_COUNT_INTERVAL = 3600

    def __init__(self, spec):
        self.delay = spec["delay"]
        self.retry_window = spec["retry_window"]
        self.lifetime = spec["lifetime"]
        self.auto_whitelist = spec["auto_whitelist"]
        self.triplets = {}
        self.client_count = 0
        self.client_last = None

    def check(self, sender, recipient, now):
        now = int(now)  # postgrey works with time() seconds
        if self.auto_whitelist > 0:
            if self.client_last is not None and now - self.client_last > self.lifetime:
                self.client_count, self.client_last = 0, None
            if self.client_count >= self.auto_whitelist:
                if self.client_last is not None and (
                    now >= self.client_last + self.AWL_COUNT_INTERVAL or self.client_last > now
                ):
                    self.client_count += 1
                    self.client_last = now
                return True
        key = (sender, recipient)
        known = self.triplets.get(key)
        if known is not None and now - known[1] > self.lifetime:
            known = None
        passed_before = False
        first = now
        if known is not None:
            first = known[0]
            if known[1] - known[0] >= self.delay:
                passed_before = True
            elif now - first > self.retry_window:
                first = now
            first = min(first, now)
        self.triplets[key] = (first, now)
        passes = now - first >= self.delay
        if (
            self.auto_whitelist > 0
            and passes
            and not passed_before
            and (self.client_last is None or now >= self.client_last + self.AWL_COUNT_INTERVAL)
        ):
            self.client_count += 1
            self.client_last = now
        return passes


class Latency:
    """A latency from the scenario: fixed, lognormal (mean/sd), exponential or uniform."""

    def __init__(self, spec, rng):
        self.spec = spec
        self.rng = rng

    def sample(self):
        kind = self.spec[0]
        if kind == "fixed":
            return self.spec[1]
        if kind == "lognormal":
            return self.rng.lognormvariate(self.spec[1], self.spec[2])
        if kind == "exponential":
            return self.rng.expovariate(1.0 / self.spec[1]) if self.spec[1] > 0 else 0.0
        if kind == "uniform":
            return self.rng.uniform(self.spec[1], self.spec[2])
        raise ValueError(kind)


class FakeServer:
    """One destination's server. `faults` is a list of (start, end, kind, stage) in scenario
    seconds; `clock` maps the recorder's wall clock to scenario time."""

    def __init__(self, dest, port, faults, clock: Clock, events, nft, seed):
        self.dest = dest
        self.domain = dest["domain"]
        self.port = port
        self.faults = faults
        self.clock = clock
        self.events = events
        self.nft = nft
        rng = random.Random(seed)
        self.rng = rng
        self.greeting = Latency(dest["greeting"], rng)
        self.rcpt_latency = Latency(dest["rcpt"], rng)
        self.transaction = Latency(dest["latency"], rng)
        self.tempfail = dest["tempfail"]
        self.permfail = dest["permfail"]
        self.spam = dest["spam"]
        self.greylist = Greylist(dest["greylist"]) if dest["greylist"] else None
        rl = dest["rate_limit"]
        self.msg_bucket = TokenBucket(rl["messages"], rl["per"]) if rl and rl.get("messages") else None
        self.conn_bucket = (
            TokenBucket(rl["connections"], rl["per"]) if rl and rl.get("connections") else None
        )
        self.rate_reply = rl["reply"] if rl else "450"
        mc = dest["max_connections"]
        self.max_conn = mc["limit"] if mc else None
        self.excess = mc["excess"] if mc else None
        self.open_conns = 0
        self.slot_free = asyncio.Condition()
        self.server = None
        self.conn_seq = 0
        self.writers = set()

    # --- faults -------------------------------------------------------------------------

    def fault_at(self, t):
        for start, end, kind, stage in self.faults:
            if start <= t < end:
                return kind, stage
        return None, None

    async def run_faults(self):
        """Opens and closes the listener and the SYN-drop rule at the fault boundaries."""
        await self.listen()
        boundaries = sorted({b for s, e, _, _ in self.faults for b in (s, e) if b != float("inf")})
        for b in boundaries:
            await self.clock.sleep_until(b)
            kind, _ = self.fault_at(b + 1e-9)
            if kind == "refuse":
                await self.close_listener()
            elif self.server is None:
                await self.listen()
            if kind == "blackhole":
                self.nft.drop(self.port)
            else:
                self.nft.undrop(self.port)
            self.events.log(self.clock.now(), self.domain, 0, "fault", kind or "none")

    async def listen(self):
        if self.server is None:
            self.server = await asyncio.start_server(
                self.handle, "127.0.0.1", self.port, reuse_address=True, backlog=4096
            )

    async def close_listener(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def shutdown(self):
        await self.close_listener()
        for w in list(self.writers):
            w.close()
        self.nft.undrop(self.port)

    # --- one connection -----------------------------------------------------------------

    async def handle(self, reader, writer):
        self.conn_seq += 1
        conn = self.conn_seq
        self.writers.add(writer)
        took_slot = False
        try:
            t = self.clock.now()
            self.events.log(t, self.domain, conn, "connect", "")
            kind, stage = self.fault_at(t)
            if kind == "mute":
                await self.hold_silently(reader)
                return
            if self.max_conn is not None and self.open_conns >= self.max_conn:
                if self.excess == "421":
                    await self.reply(writer, conn, "421 4.7.0 Too many connections, try again later")
                    return
                if self.excess == "mute":
                    await self.hold_silently(reader)
                    return
                async with self.slot_free:  # "backlog": greeted when a slot frees
                    await self.slot_free.wait_for(lambda: self.open_conns < self.max_conn)
            self.open_conns += 1
            took_slot = True
            await asyncio.sleep(self.greeting.sample())
            t = self.clock.now()
            if kind == "tempfail" and stage == "greeting":
                await self.reply(writer, conn, "421 4.7.0 Service temporarily unavailable")
                return
            if self.conn_bucket is not None and not self.conn_bucket.available(t):
                await self.reply(writer, conn, "421 4.7.0 Connection rate limit exceeded")
                return
            if self.rate_reply == "421" and self.msg_bucket is not None and not self.msg_bucket.take(t):
                await self.reply(writer, conn, "421 4.7.0 Message rate limit exceeded")
                return
            # A session that passes the message limit holds its token from here: mailsim
            # decides a conversation when it starts, so concurrent sessions never overshoot.
            if self.conn_bucket is not None:
                self.conn_bucket.take(t)
            await self.reply(writer, conn, f"220 {self.domain} ESMTP mailsim-recorder")
            await self.session(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            if took_slot:
                self.open_conns -= 1
                async with self.slot_free:
                    self.slot_free.notify_all()
            self.events.log(self.clock.now(), self.domain, conn, "close", "")
            try:
                writer.close()
            except Exception:
                pass

    async def hold_silently(self, reader):
        """TCP accepted, never greeted: wait until the client gives up."""
        while await reader.read(4096):
            pass

    async def reply(self, writer, conn, line, event="reply", about=None):
        writer.write(line.encode() + b"\r\n")
        await writer.drain()
        detail = line if about is None else f"{about} {line}"
        self.events.log(self.clock.now(), self.domain, conn, event, detail)

    async def session(self, reader, writer, conn):
        sender = None
        rcpts = []  # accepted recipients of the current transaction
        rate_exceeded = False
        transactions = 0
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = line.decode(errors="replace").strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                await self.reply(writer, conn, f"250 {self.domain}")
            elif verb == "MAIL":
                t = self.clock.now()
                kind, stage = self.fault_at(t)
                if kind == "tempfail" and stage == "mail":
                    await self.reply(writer, conn, "451 4.3.0 Temporary failure, try again later")
                    continue
                transactions += 1
                if (
                    transactions > 1
                    and self.rate_reply == "421"
                    and self.msg_bucket is not None
                    and not self.msg_bucket.take(t)
                ):
                    # A reused session gets the limiter's 421 at MAIL FROM instead of at the
                    # greeting, and the server closes (as mailsim's Server::mail_refused).
                    await self.reply(writer, conn, "421 4.7.0 Message rate limit exceeded")
                    return
                sender = address_of(cmd)
                rcpts = []
                rate_exceeded = (
                    self.rate_reply == "450"
                    and self.msg_bucket is not None
                    and not self.msg_bucket.take(t)
                )
                await self.reply(writer, conn, "250 2.1.0 Ok")
            elif verb == "RCPT":
                await asyncio.sleep(self.rcpt_latency.sample())
                rcpt = address_of(cmd)
                answer = self.rcpt_reply(sender, rcpt, rate_exceeded, rcpts)
                await self.reply(writer, conn, answer, "rcpt-reply", rcpt)
            elif verb == "DATA":
                if not rcpts:
                    await self.reply(writer, conn, "554 5.5.1 Error: no valid recipients")
                    continue
                await self.reply(writer, conn, "354 End data with <CR><LF>.<CR><LF>")
                mailsim_id = await read_message(reader)
                await asyncio.sleep(self.transaction.sample())
                await self.reply(writer, conn, self.end_of_data(mailsim_id, rcpts))
                rcpts = []
            elif verb == "RSET":
                rcpts = []
                await self.reply(writer, conn, "250 2.0.0 Ok")
            elif verb == "NOOP":
                await self.reply(writer, conn, "250 2.0.0 Ok")
            elif verb == "QUIT":
                await self.reply(writer, conn, "221 2.0.0 Bye")
                return
            else:
                await self.reply(writer, conn, "502 5.5.2 Error: command not recognized")

    def rcpt_reply(self, sender, rcpt, rate_exceeded, rcpts):
        t = self.clock.now()
        kind, stage = self.fault_at(t)
        if kind == "tempfail" and stage == "rcpt":
            return "450 4.3.0 Temporary failure, try again later"
        if rate_exceeded:
            return "450 4.2.1 Receiving mail at a rate that prevents additional messages"
        if self.greylist is not None and not self.greylist.check(sender, rcpt, t):
            return "450 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/"
        if self.permfail or self.tempfail:
            u = self.rng.random()
            if u < self.permfail:
                return "550 5.7.1 Recipient rejected"
            if u < self.permfail + self.tempfail:
                return "450 4.2.0 Temporary failure, try again later"
        rcpts.append(rcpt)
        return "250 2.1.5 Ok"

    def end_of_data(self, mailsim_id, rcpts):
        t = self.clock.now()
        kind, stage = self.fault_at(t)
        if kind == "tempfail" and stage == "data":
            return "451 4.7.1 Temporary failure, try again later"
        if self.spam["tempfail"] or self.spam["reject"]:
            u = self.rng.random()
            if u < self.spam["reject"]:
                return "550 5.7.1 Message content rejected"
            if u < self.spam["reject"] + self.spam["tempfail"]:
                return "451 4.7.1 Message content deferred"
        for r in rcpts:
            self.events.log(t, self.domain, 0, "accepted", f"{mailsim_id} {r}")
        return f"250 2.0.0 Ok: queued as M{mailsim_id}"


def address_of(cmd):
    lt, gt = cmd.find("<"), cmd.find(">")
    return cmd[lt + 1 : gt] if 0 <= lt < gt else ""


async def read_message(reader):
    """Reads DATA up to the lone dot; returns the X-Mailsim-Id header's value."""
    mailsim_id = "?"
    while True:
        line = await reader.readline()
        if not line or line in (b".\r\n", b".\n"):
            return mailsim_id
        if line.lower().startswith(b"x-mailsim-id:"):
            mailsim_id = line.split(b":", 1)[1].strip().decode()
