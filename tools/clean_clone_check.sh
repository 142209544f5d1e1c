#!/usr/bin/env bash
# Run the SQLite test pass on a clean clone of HEAD, reusing this checkout's virtualenv
# (PYTHONPATH puts the clone's sources first). A quick guard that what is committed works.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d /tmp/closeloop-clone-XXXX)"
git clone -q "$here" "$dir/repo"
cd "$dir/repo"
PYTHONPATH="$dir/repo/src" "$here/.venv/bin/python" -m pytest -q -x -p no:cacheprovider "$@"
status=$?
rm -rf "$dir"
exit $status
