#!/usr/bin/env bash
# Installs what the recorder needs, from Debian's packages, without configuring the system's
# own Postfix: `postfix` (3.7 on Debian 12) with debconf's "No configuration", and `nftables`
# for the SYN-drop rules that make a blackholed host. Run as root. The system Postfix is not
# started; the recorder runs its own instance from /var/lib/mailsim-recorder.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
missing=()
command -v postfix >/dev/null || missing+=(postfix)
command -v nft >/dev/null || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
postconf -d mail_version
nft --version
