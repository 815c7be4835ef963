#!/bin/sh
# Install the Debian packages given as arguments that the image does not have yet.
#
# One Dockerfile builds on two kinds of base: the public debian:bookworm-slim (this installs
# the packages from the Debian mirror) and the local zt-base:bookworm, which
# scripts/make-base-image.sh made with every runtime package already in it (this then does
# nothing, so a host with no registry and no network in its builds still builds).
set -eu
missing=""
for p in "$@"; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
if [ -z "$missing" ]; then
  echo "ensure-packages: all $# present"
  exit 0
fi
echo "ensure-packages: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# openjdk's postinst needs the man directories that slim images leave out.
mkdir -p /usr/share/man/man1
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/*
