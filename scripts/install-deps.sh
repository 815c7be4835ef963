#!/usr/bin/env bash
# Installs the Debian packages zt needs to build and test, when they are missing.
# Runs apt-get only as root and only for what is not installed yet; elsewhere it prints
# what is missing and fails, so a developer knows what to install.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

packages=(
  # Python core and lab
  python3-venv python3-pip openssl curl git procps
  # the lab's Prometheus server (Milestone 4); the lab runs its own binary, config and port
  prometheus
  # service-a (C++): see native/cpp/apt-packages.txt
  # service-b (Java)
  openjdk-17-jdk-headless maven
)
if [[ -f "$repo/native/cpp/apt-packages.txt" ]]; then
  while read -r p; do
    p="${p%%#*}"; p="${p//[[:space:]]/}"
    [[ -n "$p" ]] && packages+=("$p")
  done < "$repo/native/cpp/apt-packages.txt"
fi
# PostgreSQL (issue 16, docs/scaling.md): the server the RA-replica tests start themselves
# (zt/lab/postgres.py: initdb in a temporary directory, a private Unix socket, stopped by
# PID). Only the binaries are used; the package's own cluster is neither needed nor touched.
packages+=(postgresql)
if [[ "${ZT_WITH_DOCKER:-0}" == "1" ]]; then
  packages+=(docker.io docker-compose debootstrap)
fi

# The chaos lab's toxiproxy server (docs/chaos.md), a Go program, pinned and built into the
# repository's own .tools/bin (not on PATH, not a Debian package): skipped when already built.
toxiproxy_version="v2.5.0"
toxiproxy_bin="$repo/.tools/bin/toxiproxy-server"
if [[ ! -x "$toxiproxy_bin" ]]; then
  if command -v go >/dev/null 2>&1; then
    echo "deps: building toxiproxy-server $toxiproxy_version (go install, about 25 s)"
    gobin="$(mktemp -d)"
    GOBIN="$gobin" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$toxiproxy_version"
    mkdir -p "$repo/.tools/bin"
    mv "$gobin/server" "$toxiproxy_bin"
    rmdir "$gobin"
  else
    echo "deps: no go toolchain: the chaos lab needs $toxiproxy_bin (toxiproxy $toxiproxy_version)" >&2
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#packages[@]} Debian packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "deps: not root; install these yourself: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} packages"
