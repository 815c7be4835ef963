#!/bin/sh
# zt-postgres: initdb into the data volume at the first start, then the server in the foreground
# (PID 1: it gets the engine's stop signal, SIGINT, and shuts down fast).
#
# Authentication, as in zt/lab/postgres.py: one role (zt), trust, and only from where it must be
# reached: the local socket (in /tmp, the container's tmpfs) and the container's own networks
# (`samenet`). The lab puts this container on a network of its own with the RA replicas and the
# one-shot ztca containers only (not the agents' network, not the services'), and publishes no
# port: the store's clients are exactly the containers that hold the CA.
#
# Arguments are passed to postgres (`-c name=value ...`).
set -eu
bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d | sort -V | tail -n 1)"
data=/var/lib/zt/pgdata/data
if [ ! -s "$data/PG_VERSION" ]; then
  "$bin/initdb" -D "$data" -U zt --auth=trust -E UTF8 --no-sync >/dev/null
  printf 'local all zt trust\nhost all zt samenet trust\n' >"$data/pg_hba.conf"
  echo "zt-postgres: initdb done in $data" >&2
fi
exec "$bin/postgres" -D "$data" -k /tmp -c listen_addresses='*' -c max_connections=200 \
  -c shared_buffers=32MB "$@"
