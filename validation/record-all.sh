#!/usr/bin/env bash
# Records every tests/fidelity/*/scenario.toml on this machine's Postfix (or the ones named).
# Run as root after validation/setup.sh and `cargo build --release`. At raised priority, so
# that other work on the machine disturbs the recorded timings less.
set -euo pipefail
cd "$(dirname "$0")/.."
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(tests/fidelity/*/scenario.toml)
for s in "${scenarios[@]}"; do
  nice -n -10 python3 validation/record.py "$s"
done
