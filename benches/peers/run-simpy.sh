#!/bin/sh
# Runs the SimPy peer of the reference model (benches/peers/simpy_reference.py), only when
# asked: creates a virtual environment under benches/peers/.venv on first use and
# pip-installs SimPy into it (from PyPI), then passes its arguments on, e.g.
#   benches/peers/run-simpy.sh --arrival-hours 0.1
# Nothing in `cargo test` or `cargo build` runs this.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "simpy==4.1.2"
fi
exec "$venv/bin/python" "$here/simpy_reference.py" "$@"
