#!/usr/bin/env bash
# Builds and tests service-b (JUnit 5 through Maven Surefire); exits non-zero on any failure.
# The Surefire XML reports stay in target/surefire-reports and are copied to
# <repo>/build/test-results/java/ (also after a failure).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here" || exit
mvn -B -ntp verify "$@"
rc=$?
mkdir -p "$repo/build/test-results/java"
if compgen -G "target/surefire-reports/TEST-*.xml" > /dev/null; then
    cp target/surefire-reports/TEST-*.xml "$repo/build/test-results/java/"
fi
exit $rc
