#!/usr/bin/env bash
# Debian packages the tests use as third-party judges of our output:
# cloud-init (its schema validator), shellcheck, iptables (the metadata block
# test in a network namespace). Installed only when missing.
set -euo pipefail
need=()
command -v cloud-init >/dev/null || need+=(cloud-init)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
