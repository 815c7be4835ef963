#!/usr/bin/env bash
# Builds service-b: the shaded jar and a launcher, in <repo>/build/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"
mvn -q -B -DskipTests package
mkdir -p "$repo/build"
cp target/service-b.jar "$repo/build/service-b.jar"
cat > "$repo/build/service-b" <<'LAUNCHER'
#!/bin/sh
exec java -jar "$(dirname "$0")/service-b.jar" "$@"
LAUNCHER
chmod +x "$repo/build/service-b"
echo "built $repo/build/service-b and $repo/build/service-b.jar"
