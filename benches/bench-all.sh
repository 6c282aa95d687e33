#!/bin/sh
# Every figure of BENCHMARKS.md, in order (about 10 minutes on an idle 2-core machine).
# Wall-clock figures are medians of 5 runs and move with whatever else the machine does;
# run it when nothing else does. The SimPy comparison is separate: benches/peers/compare.sh.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
m=target/release/mailsim
echo "## machine"; uname -srm; grep -m1 'model name' /proc/cpuinfo; nproc; uptime
echo "## engine"; $m bench engine --repeat 5
echo "## reference model (model only)"; $m bench --scenario scenarios/bench-reference.toml --repeat 5
echo "## reference model (mailsim run, with and without deliveries.csv)"; $m bench run --scenario scenarios/bench-reference.toml --repeat 5
echo "## backlog"; $m bench --scenario scenarios/backlog-outage.toml --repeat 5
echo "## sweep scaling"; $m bench sweep --repeat 5
echo "## memory (model only)"; $m bench memory
echo "## memory (mailsim run)"; $m bench memory --full
echo "## richer scenarios (model only)"
for s in disk-full dns-servfail mx-backup slow-content-filter provider-rate-limit greylisting blackhole-starvation; do
    printf '%s: ' "$s"; $m bench --scenario "scenarios/$s.toml" --repeat 5
done
