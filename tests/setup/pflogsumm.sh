#!/usr/bin/env bash
# Installs Debian's pflogsumm for the mail.log test when it is missing (the test calls
# this; so does .ci/run). Prints the path of pflogsumm on success.
set -euo pipefail
if ! command -v pflogsumm >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q pflogsumm >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pflogsumm >/dev/null 2>&1; }
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q pflogsumm >/dev/null 2>&1
    fi
fi
command -v pflogsumm
