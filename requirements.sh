#!/usr/bin/env bash
# Build chain: ./venv with the pinned dependencies and chronopipe installed in editable mode.
#   ./requirements.sh            create or update ./venv (idempotent; a second run changes nothing)
# Re-run after editing requirements.in: the lock is recompiled only when requirements.in's hash
# differs from the one recorded in requirements.txt (file times mean nothing in a fresh clone).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON=${PYTHON:-python3}
VENV=venv
STAMP_DIR=$VENV/.chronopipe

fail() { echo "requirements.sh: $*" >&2; exit 1; }
trap 'fail "step failed at line $LINENO; fix the error above and re-run ./requirements.sh"' ERR

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "chronopipe needs Python >= 3.11; set PYTHON=/path/to/python3.11 and re-run"

hash_of() { "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }

if [ ! -x "$VENV/bin/python" ]; then
    echo "requirements.sh: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
mkdir -p "$STAMP_DIR"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)

if [ ! -x "$VENV/bin/pip-compile" ]; then
    echo "requirements.sh: installing pip-tools"
    "${PIP[@]}" install "pip-tools>=7.4"
fi

in_hash=$(hash_of requirements.in)
if ! grep -qx "# requirements.in sha256: $in_hash" requirements.txt 2>/dev/null; then
    echo "requirements.sh: requirements.in changed; compiling requirements.txt"
    "$VENV/bin/pip-compile" --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
        --output-file requirements.txt requirements.in
    { echo "# requirements.in sha256: $in_hash"; cat requirements.txt; } > requirements.txt.new
    mv requirements.txt.new requirements.txt
fi

lock_hash=$(hash_of requirements.txt)
if [ "$(cat "$STAMP_DIR/synced" 2>/dev/null)" != "$lock_hash" ]; then
    echo "requirements.sh: syncing $VENV with requirements.txt"
    "$VENV/bin/pip-sync" --quiet requirements.txt
    rm -f "$STAMP_DIR/installed"
    echo "$lock_hash" > "$STAMP_DIR/synced"
fi

setup_hash=$(hash_of setup.py)
if [ "$(cat "$STAMP_DIR/installed" 2>/dev/null)" != "$setup_hash" ]; then
    echo "requirements.sh: installing chronopipe (editable)"
    "${PIP[@]}" install --no-deps --no-build-isolation -e .
    echo "$setup_hash" > "$STAMP_DIR/installed"
fi
# System tools the tests use: tshark (with capinfos, editcap, mergecap) is the reference capture
# reader, chromium renders the HTML report, graphviz draws Pipeline.plot(), postgresql (initdb, pg_ctl) runs the
# throwaway server of the PostgreSQL sink's tests (tests/postgres_helper.py; the cluster service Debian may start
# is not used). Installed where this runs as root with apt-get (CI, containers); elsewhere the tests that need
# them are skipped and say how to get them.
missing=()
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "requirements.sh: installing ${missing[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "requirements.sh: ${missing[*]} not found; the tests that compare with them will be skipped" \
             "(Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    fi
fi
echo "requirements.sh: $VENV is ready (venv/bin/python main.py, venv/bin/pytest)"
