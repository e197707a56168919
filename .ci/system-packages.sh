#!/usr/bin/env bash
# What the tests need beyond Python packages: PostgreSQL (the study-storage tests start a cluster of
# their own on 127.0.0.1 and stop it) and Chromium (the pages the tests render). `make test` and
# .ci/run both call this. Installs what is missing with apt-get where this user may (root, or sudo
# without a password); otherwise says in one line what to install, and fails.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    as_root=(none)
fi
if [ "${as_root[*]-}" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "genmodels: the tests need ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run make test again" >&2
    exit 1
fi
echo "genmodels: installing ${missing[*]} for the tests (apt-get)"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package may start a default cluster on port 5432; the tests use only their own.
"${as_root[@]}" service postgresql stop >/dev/null 2>&1 || true
