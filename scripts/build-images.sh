#!/usr/bin/env bash
# Builds the zt container images from artifacts built on this host.
#
#   scripts/build-images.sh                   all images: zt-ra zt-crl zt-agent zt-service-a zt-service-b
#                                             zt-prometheus (the lab's Prometheus server, Milestone 4)
#                                             zt-postgres (the container lab's store on --store postgres)
#   scripts/build-images.sh zt-agent zt-ra    only these
#
#   ZT_IMAGE_TAG   tag of the images (default: dev)
#   ZT_BASE_IMAGE  base of every image (default: zt-base:bookworm, made by make-base-image.sh
#                  when missing; on a machine that can pull, debian:bookworm-slim works too)
#
# Why host artifacts and not compilers in the images: builds stay small and quick on two
# cores, the images run exactly the binaries the other suites tested, and the builds need no
# PyPI or Maven access (only the Debian mirror, and not even that on the local base). So:
# the Python core is installed from a wheelhouse (`pip wheel` of zt and its dependencies, at
# the versions pinned by the host's .venv), service-a is build/service-a, service-b is
# build/service-b.jar. Build contexts and the wheelhouse go under build/containers/.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
tag="${ZT_IMAGE_TAG:-dev}"
base="${ZT_BASE_IMAGE:-zt-base:bookworm}"
out="$repo/build/containers"
# The legacy builder: Debian's docker.io has no buildx plugin, and it needs none of BuildKit.
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"

say() { echo "[images] $*"; }
mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }

all=(zt-ra zt-crl zt-agent zt-service-a zt-service-b zt-prometheus zt-postgres)
wanted=("$@")
[[ ${#wanted[@]} -eq 0 ]] && wanted=("${all[@]}")
for w in "${wanted[@]}"; do
  [[ " ${all[*]} " == *" $w "* ]] || { say "unknown image $w (one of: ${all[*]})" >&2; exit 2; }
done
wants() { [[ " ${wanted[*]} " == *" $1 "* ]]; }
wants_python() { wants zt-ra || wants zt-crl || wants zt-agent; }

t_all=$SECONDS
if ! timeout 10 docker info >/dev/null 2>&1; then
  say "no Docker engine answers; start one: scripts/docker-engine.sh start" >&2
  exit 1
fi

# 1. The base image.
if ! docker image inspect "$base" >/dev/null 2>&1; then
  if [[ "$base" == "zt-base:bookworm" ]]; then
    "$repo/scripts/make-base-image.sh"
  else
    say "pulling $base"
    docker pull -q "$base" >/dev/null
  fi
fi
say "base image $base ($(mb "$base"))"

# 2. Host artifacts: build what is missing with the repository's own targets.
need=()
wants_python && [[ ! -x .venv/bin/python ]] && need+=(venv)
wants zt-service-a && [[ ! -x build/service-a ]] && need+=(native-cpp)
wants zt-service-b && [[ ! -f build/service-b.jar ]] && need+=(native-java)
if [[ ${#need[@]} -gt 0 ]]; then
  say "building host artifacts: make ${need[*]}"
  make --no-print-directory "${need[@]}"
fi

mkdir -p "$out/logs"
ctx="$out/ctx"
rm -rf "$ctx"
mkdir -p "$ctx/python/wheels/deps" "$ctx/python/wheels/zt" "$ctx/service-a" "$ctx/service-b" "$ctx/prometheus" \
  "$ctx/postgres"
for d in python service-a service-b prometheus postgres; do cp containers/base/ensure-packages.sh "$ctx/$d/"; done
cp containers/prometheus/entrypoint.sh "$ctx/prometheus/entrypoint.sh"
cp containers/postgres/entrypoint.sh "$ctx/postgres/entrypoint.sh"

# 3. The wheelhouse: zt (from a copy of the tree, so setuptools leaves build/ alone) and its
# runtime dependencies at the host venv's versions. SOURCE_DATE_EPOCH makes the zt wheel
# byte-identical while the code is, so the image layers above it stay cached.
if wants_python; then
  t0=$SECONDS
  src="$out/src"
  rm -rf "$src" "$out/wheels.tmp"
  mkdir -p "$src" "$out/wheels.tmp"
  tar --exclude=__pycache__ -c zt pyproject.toml README.md | tar -x -C "$src"
  .venv/bin/pip freeze --exclude-editable >"$out/constraints.txt"
  SOURCE_DATE_EPOCH=315532800 .venv/bin/pip wheel -q --disable-pip-version-check -c "$out/constraints.txt" \
    -w "$out/wheels.tmp" "$src" >"$out/logs/wheels.log" 2>&1 || { tail -n 20 "$out/logs/wheels.log" >&2; exit 1; }
  mv "$out"/wheels.tmp/zt-*.whl "$ctx/python/wheels/zt/"
  mv "$out"/wheels.tmp/*.whl "$ctx/python/wheels/deps/"
  rm -rf "$out/wheels.tmp" "$src"
  cp containers/ra/ca-init.sh "$ctx/python/ca-init.sh"
  say "wheelhouse: $(find "$ctx/python/wheels/deps" -name '*.whl' | wc -l) dependency wheels + $(basename "$ctx"/python/wheels/zt/*.whl) in $(( SECONDS - t0 ))s"
fi
wants zt-service-a && cp build/service-a "$ctx/service-a/service-a"
wants zt-service-b && cp build/service-b.jar "$ctx/service-b/service-b.jar"

# 4. The images.
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
dirty=false
[[ -n "$(git status --porcelain -- zt native containers 2>/dev/null)" ]] && dirty=true
build() {  # image dockerfile context
  local image="$1:$tag" t0=$SECONDS log="$out/logs/$1.build.log"
  say "building $image ..."
  if ! docker build --build-arg "BASE=$base" -f "$2" -t "$image" \
      --label "org.opencontainers.image.revision=$revision" --label "zt.dirty=$dirty" \
      --label "zt.base=$base" --label "org.opencontainers.image.title=$1" "$3" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "$image FAILED (log: $log)" >&2
    exit 1
  fi
  local secs=$(( SECONDS - t0 ))
  say "built $image in ${secs}s ($(mb "$image"))"
  printf '%s\t%s\t%s\n' "$image" "$secs" "$(mb "$image")" >>"$out/build-times.tsv.tmp"
}
: >"$out/build-times.tsv.tmp"
wants zt-ra && build zt-ra containers/ra/Dockerfile "$ctx/python"
wants zt-crl && build zt-crl containers/crl-publisher/Dockerfile "$ctx/python"
wants zt-agent && build zt-agent containers/agent/Dockerfile "$ctx/python"
wants zt-service-a && build zt-service-a containers/service-a/Dockerfile "$ctx/service-a"
wants zt-service-b && build zt-service-b containers/service-b/Dockerfile "$ctx/service-b"
wants zt-prometheus && build zt-prometheus containers/prometheus/Dockerfile "$ctx/prometheus"
wants zt-postgres && build zt-postgres containers/postgres/Dockerfile "$ctx/postgres"
mv "$out/build-times.tsv.tmp" "$out/build-times.tsv"

# Dangling intermediate images from earlier builds of the same tags.
docker image prune -f --filter "label=zt.base" >/dev/null 2>&1 || true
say "done in $(( SECONDS - t_all ))s (revision ${revision:0:12}, dirty=$dirty); timings in $out/build-times.tsv"
