#!/usr/bin/env bash
# Debian packages the tests drive for real: Postfix's smtp-source/smtp-sink and swaks talk SMTP to the sink,
# lua5.4 runs the KumoMTA policy, luacheck lints it, openssl makes the sink's test certificates, chromium (with fonts
# for its screenshots) renders the console in its browser tests. The real-binary tier (npm run test:kumod) needs
# redis-server in Dragonfly's place, iproute2 and procps for its network namespaces and zstd to unpack the KumoMTA
# bundle. Postfix is preseeded so its installer asks nothing.
set -euo pipefail
packages=(postfix swaks lua5.4 lua-check openssl chromium fonts-liberation redis-server iproute2 procps zstd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (${packages[*]})"
  exit 0
fi
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "system packages: installing ${missing[*]}"
echo "postfix postfix/main_mailer_type select No configuration" | "${sudo_cmd[@]}" debconf-set-selections
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: installed ${missing[*]}"
