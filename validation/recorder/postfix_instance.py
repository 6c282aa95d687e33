"""A throw-away Postfix instance on loopback, in its own configuration and queue directory.

It never touches /etc/postfix, the system's resolver configuration or any address outside
127.0.0.0/8: smtpd listens on 127.0.0.1:10025, every test domain goes to its fake server via a
transport map with a literal [127.0.0.1]:port next hop (no DNS lookup at all), and mail to the
senders' domain (notices) is discarded by discard(8).
"""

import os
import shutil
import subprocess
import time

SMTPD_PORT = 10025
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

# Settings the recording needs; the scenario's [postfix] table comes after them and wins.
BASE_MAIN_CF = """\
compatibility_level = 3.6
config_directory = {base}/etc
queue_directory = {base}/spool
data_directory = {base}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mailsim-recorder.localdomain
mydomain = localdomain
myorigin = $myhostname
mydestination =
relay_domains =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = texthash:{base}/etc/transport
maillog_file = {base}/maillog
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
biff = no
"""

# master.cf: the stock services, chroot off; maxproc of the services a scenario may set.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - {smtpd} smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - {smtp} smtp
relay     unix  - - n - {relay} smtp -o syslog_name=postfix/$service_name
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class PostfixInstance:
    def __init__(self, base):
        self.base = base
        self.etc = os.path.join(base, "etc")
        self.spool = os.path.join(base, "spool")
        self.maillog = os.path.join(base, "maillog")

    def postfix(self, *args, check=True):
        return subprocess.run(["postfix", "-c", self.etc, *args], check=check,
                              capture_output=True, text=True)

    def configure(self, plan, ports):
        """A fresh instance: empty queue, the scenario's main.cf and master.cf values."""
        self.stop()
        if os.path.exists(self.base):
            shutil.rmtree(self.base)
        for d in ("etc", "spool", "data"):
            os.makedirs(os.path.join(self.base, d))
        shutil.chown(os.path.join(self.base, "data"), user="postfix")
        main = BASE_MAIN_CF.format(base=self.base)
        for name, value in plan["postfix"].items():
            main += f"{name} = {value}\n"
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main)
        master = plan["master"]
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(
                port=SMTPD_PORT,
                smtpd=master.get("smtpd", "-"),
                smtp=master.get("smtp", "-"),
                relay=master.get("relay", "-"),
            ))
        sender_domain = plan["sender"].rsplit("@", 1)[1]
        with open(os.path.join(self.etc, "transport"), "w") as f:
            for dest in plan["destinations"]:
                f.write(f"{dest['domain']} {dest['transport']}:[127.0.0.1]:{ports[dest['domain']]}\n")
            f.write(f"{sender_domain} discard:\n")
        out = self.postfix("check", check=False)
        problems = [l for l in (out.stdout + out.stderr).splitlines() if "fatal" in l]
        if problems:
            raise RuntimeError("postfix check: " + "; ".join(problems))

    def start(self):
        """Starts Postfix; returns qmgr's start instant (system clock seconds)."""
        self.postfix("start")
        deadline = time.time() + 10
        while time.time() < deadline:
            pid = self.qmgr_pid()
            if pid:
                return process_start_time(pid)
            time.sleep(0.01)
        raise RuntimeError("qmgr did not start; see " + self.maillog)

    def stop(self):
        if os.path.exists(os.path.join(self.etc, "main.cf")):
            self.postfix("stop", check=False)
            for _ in range(100):
                if not self.postfix("status", check=False).returncode == 0:
                    break
                time.sleep(0.1)

    def qmgr_pid(self):
        master_pid = os.path.join(self.spool, "pid", "master.pid")
        try:
            with open(master_pid) as f:
                master = f.read().strip()
        except OSError:
            return None
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0")[0]
            except OSError:
                continue
            if fields[1] == master and argv0 == b"qmgr":
                return int(pid)
        return None

    def version(self):
        out = subprocess.run(["postconf", "-c", self.etc, "-h", "mail_version"],
                             capture_output=True, text=True)
        return out.stdout.strip()

    def deferred_mtimes(self):
        """{queue id: mtime} of the deferred files: the backoff qmgr gave each one."""
        out = {}
        path = os.path.join(self.spool, "deferred")
        try:
            for d in os.scandir(path):
                for e in os.scandir(d.path):
                    try:
                        out[e.name] = int(e.stat().st_mtime)
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
        return out

    def queue_counts(self):
        """Queue files per directory (deferred is hashed one level deep)."""
        counts = {}
        for q in QUEUES:
            path = os.path.join(self.spool, q)
            n = 0
            try:
                for e in os.scandir(path):
                    if e.is_dir(follow_symlinks=False):
                        n += sum(1 for _ in os.scandir(e.path))
                    else:
                        n += 1
            except FileNotFoundError:
                pass
            counts[q] = n
        return counts


def process_start_time(pid):
    """When process `pid` started, in system-clock seconds. /proc gives it in clock ticks
    (10 ms) since boot on CLOCK_BOOTTIME; /proc/stat's btime is whole seconds, too coarse."""
    with open(f"/proc/{pid}/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    since_start = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - since_start
