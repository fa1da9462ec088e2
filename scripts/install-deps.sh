#!/usr/bin/env bash
# Install what the project needs on a Debian 12 machine (run as root); quick when present.
set -euo pipefail
cd "$(dirname "$0")/.."

# golang-go: build_host local builds the release here (the lab's hosts have the same Go)
packages=(debootstrap systemd-container iproute2 openssh-client git make python3-venv haproxy
          golang-go)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    # haproxy is here for `haproxy -c` (the tests check every configuration the deploy can
    # write); the machine's own proxy service is not wanted
    if [[ " ${missing[*]} " == *" haproxy "* ]]; then
        systemctl disable --now haproxy >/dev/null 2>&1 || true
    fi
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing the Python environment in .venv/"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e ".[test]"
    touch "$stamp"
fi
# the real helm (3 and 4) the suite renders and lints the chart with
.venv/bin/python scripts/install_helm.py
