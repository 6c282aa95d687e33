#!/bin/sh
# mailsim against the SimPy peer (simpy_reference.py) on the reference model with its
# arrivals cut to MINUTES (default: 6 12 24 48), the medians of 5 mailsim and 3 SimPy runs
# each. Creates the SimPy virtual environment on first use (run-simpy.sh). Run on request
# only, on an idle machine: BENCHMARKS.md explains the figures and the extrapolation to
# the full 10 h.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
cargo build --release --quiet
m=target/release/mailsim
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
minutes=${*:-6 12 24 48}
for min in $minutes; do
    sc="$tmp/bench-reference-${min}m.toml"
    sed "s/^stop = \"10h\"/stop = \"${min}m\"/" scenarios/bench-reference.toml > "$sc"
    echo "## arrivals for $min min"
    printf 'mailsim model:  '; $m bench --scenario "$sc" --repeat 5
    $m bench run --scenario "$sc" --repeat 5 | sed 's/^/mailsim run:    /'
    hours=$(echo "$min" | awk '{ printf "%.6f", $1 / 60 }')
    for i in 1 2 3; do
        printf 'simpy:          '; "$here/run-simpy.sh" --arrival-hours "$hours"
    done
done
