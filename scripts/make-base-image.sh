#!/usr/bin/env bash
# Makes the local base image zt-base:bookworm where no registry can be pulled from.
#
# On a normal machine the Dockerfiles in containers/ start from debian:bookworm-slim. Here no
# registry answers, so this builds the equivalent locally: a minimal Debian bookworm rootfs
# (debootstrap --variant=minbase, from the Debian mirror apt already uses, over plain http)
# with every runtime package the zt images need (containers/base/packages.txt), trimmed the
# way the slim images are (no docs, man pages or locales), imported with `docker import`.
#
#   scripts/make-base-image.sh            does nothing when the image exists (idempotent)
#   ZT_BASE_REBUILD=1 scripts/make-base-image.sh   replace it
#
# Needs root (debootstrap, chroot) and a running engine (scripts/docker-engine.sh start).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
image="${ZT_LOCAL_BASE_IMAGE:-zt-base:bookworm}"
suite=bookworm

say() { echo "[base-image] $*"; }

if [[ "${ZT_BASE_REBUILD:-0}" != "1" ]] && docker image inspect "$image" >/dev/null 2>&1; then
  say "$image exists ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')); nothing to do"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  say "needs root (debootstrap and chroot); run as root or import a base image yourself" >&2
  exit 1
fi

# The mirrors apt is configured with (deb822 .sources or one-line .list), plain http only.
apt_uri() {  # $1: regex the URI must match
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{for (i=2;i<=NF;i++) print $i}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
  } | grep -E "^http://" | grep -E "$1" | head -n 1
}
mirror="${ZT_DEBIAN_MIRROR:-$(apt_uri '/debian/?$' || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="${ZT_DEBIAN_SECURITY_MIRROR:-$(apt_uri '/debian-security/?$' || true)}"
security="${security:-http://deb.debian.org/debian-security}"

packages=()
while read -r line; do
  line="${line%%#*}"; line="${line//[[:space:]]/}"
  [[ -n "$line" ]] && packages+=("$line")
done <"$repo/containers/base/packages.txt"

if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

t0=$SECONDS
work="$repo/build/containers/rootfs.$$"
rootfs="$work/rootfs"
cleanup() {
  mountpoint -q "$rootfs/proc" 2>/dev/null && umount "$rootfs/proc"
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work"

say "debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
say "minbase done in $(( SECONDS - t0 ))s"

# As Docker's official slim images: no docs (but copyrights), man pages, locales or apt caches.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/zt-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
cat >"$rootfs/etc/apt/apt.conf.d/zt-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
mkdir -p "$rootfs/usr/share/man/man1"   # openjdk's postinst wants it
# postgresql's postinst would create a cluster "main" in the image; zt-postgres makes its own.
mkdir -p "$rootfs/etc/postgresql-common/createcluster.d"
echo "create_main_cluster = false" >"$rootfs/etc/postgresql-common/createcluster.d/zt.conf"

say "installing ${#packages[@]} runtime packages: ${packages[*]}"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c "apt-get update -qq && apt-get install -y -qq ${packages[*]} && apt-get clean" \
  >"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; exit 1; }
umount "$rootfs/proc"

# What debootstrap installed before the dpkg excludes existed, and leftovers of the build.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log \
  "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
mkdir -p "$rootfs/usr/share/man/man1"
# ssl-cert (pulled in by postgresql) generates a "snakeoil" key pair at install: no private key
# ships in an image (tests/containers/test_images.py). Here, before the import (it once sat in
# cleanup(), which runs after it, and every image carried the key).
rm -f "$rootfs/etc/ssl/private/ssl-cert-snakeoil.key" "$rootfs/etc/ssl/certs/ssl-cert-snakeoil.pem"

say "rootfs $(du -sm "$rootfs" | cut -f1) MB; docker import as $image"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  --change "LABEL org.opencontainers.image.description=\"zt local base: debian $suite minbase + zt runtime packages\"" \
  --message "debootstrap --variant=minbase $suite $mirror + ${packages[*]}" - "$image" >/dev/null
say "$image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}') in $(( SECONDS - t0 ))s"
