"""Offers the scenario's messages to Postfix's smtpd at their arrival instants.

Connections are pooled (a message takes an idle session, or opens one), so a burst of
hundreds of messages is offered in parallel the way many SMTP clients would. A message's
arrival is stamped when MAIL FROM is sent (Postfix's own arrival time is the MAIL FROM time
at smtpd).
"""

import asyncio

from .postfix_instance import SMTPD_PORT

MAX_SESSIONS = 50


class SmtpSession:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls):
        reader, writer = await asyncio.open_connection("127.0.0.1", SMTPD_PORT)
        s = cls(reader, writer)
        await s.expect("220")
        await s.command("EHLO injector.localdomain", "250")
        return s

    async def expect(self, code):
        while True:
            line = (await self.reader.readline()).decode(errors="replace")
            if not line:
                raise ConnectionError("smtpd closed the connection")
            if line[3:4] != "-":
                if not line.startswith(code):
                    raise ConnectionError(f"smtpd answered {line.strip()!r}")
                return line

    async def command(self, text, code):
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()
        return await self.expect(code)

    async def send(self, sender, recipients, body):
        await self.command(f"MAIL FROM:<{sender}>", "250")
        for r in recipients:
            await self.command(f"RCPT TO:<{r}>", "250")
        await self.command("DATA", "354")
        self.writer.write(body)
        return await self.command(".", "250")


class Injector:
    def __init__(self, plan, clock, events):
        self.plan, self.clock, self.events = plan, clock, events
        self.idle = []
        self.sessions = 0
        self.free = asyncio.Condition()
        self.arrivals = {}  # mailsim id -> arrival (scenario seconds)

    def body(self, mid, recipients):
        headers = (
            f"From: <{self.plan['sender']}>\r\nTo: <{recipients[0]}>\r\n"
            f"Subject: mailsim recording message {mid}\r\n"
            f"Message-ID: <mailsim.{mid}@recorder.invalid>\r\nX-Mailsim-Id: {mid}\r\n\r\n"
        )
        pad = max(0, self.plan["size"] - len(headers) - 3)
        line = b"x" * 76 + b"\r\n"
        text = headers.encode() + line * (pad // len(line)) + b"x" * (pad % len(line)) + b"\r\n"
        return text

    async def session(self):
        async with self.free:
            while not self.idle and self.sessions >= MAX_SESSIONS:
                await self.free.wait()
            if self.idle:
                return self.idle.pop()
            self.sessions += 1
        try:
            return await SmtpSession.open()
        except Exception:
            async with self.free:
                self.sessions -= 1
                self.free.notify()
            raise

    async def offer(self, at, mid, recipients):
        await self.clock.sleep_until(at)
        body = self.body(mid, recipients)
        for attempt in range(20):
            s = await self.session()
            try:
                t = self.clock.now()
                await s.send(self.plan["sender"], recipients, body)
                self.arrivals[mid] = t
                self.events.log(t, "smtpd", 0, "injected", f"{mid} {' '.join(recipients)}")
                async with self.free:
                    self.idle.append(s)
                    self.free.notify()
                return
            except (ConnectionError, OSError) as e:
                s.writer.close()
                async with self.free:
                    self.sessions -= 1
                    self.free.notify()
                self.events.log(self.clock.now(), "smtpd", 0, "inject-retry", f"{mid} {e}")
                await asyncio.sleep(0.05)
        raise RuntimeError(f"smtpd would not take message {mid}")

    async def run(self):
        await asyncio.gather(*(self.offer(at, mid, rcpts) for at, mid, rcpts in self.plan["messages"]))

    async def close(self):
        for s in self.idle:
            try:
                await s.command("QUIT", "221")
            except (ConnectionError, OSError):
                pass
            s.writer.close()
        self.idle.clear()
