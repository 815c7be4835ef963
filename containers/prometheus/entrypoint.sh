#!/bin/sh
# zt-prometheus: write the scrape configuration the lab passed (ZT_PROMETHEUS_CONFIG) to
# /tmp/prometheus/prometheus.yml (the data directory beside it), then run Debian's prometheus
# with the arguments given (the lab's: zt.lab.prometheus_config.server_args; CMD's otherwise).
set -eu
dir=/tmp/prometheus
if [ -z "${ZT_PROMETHEUS_CONFIG:-}" ]; then
  echo "zt-prometheus: ZT_PROMETHEUS_CONFIG is empty: the lab passes the scrape configuration" >&2
  exit 2
fi
mkdir -p "$dir/data"
printf '%s\n' "$ZT_PROMETHEUS_CONFIG" >"$dir/prometheus.yml"
exec prometheus "$@"
