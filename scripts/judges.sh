#!/usr/bin/env bash
# Third-party judges of our output that do not come from PyPI, without root and
# without installing anything on the system.
#
#   scripts/judges.sh cloud-init              unpack cloud-init's Debian package into
#                                             .cache/judges/cloud-init (what `make test` runs)
#   scripts/judges.sh refresh-schema [VERSION]
#                                             vendor cloud-init's cloud-config JSON Schema
#                                             from that package into tests/judges/
#
# cloud-init is not on PyPI, and installing its Debian package would enable its
# boot services on a workstation: `apt-get download` + `dpkg-deb -x` only unpack
# it (any user; Debian and Ubuntu). Where there is no apt (macOS, other
# distributions) the tests still judge the user data with the vendored schema,
# and the test of cloud-init's own command says why it cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=.cache/judges/cloud-init
VENDORED=tests/judges/cloud-init-schema
SCHEMA_MEMBER=usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json

# Download cloud-init's .deb (VERSION optional) into $1 and unpack it into $1/root.
unpack_cloud_init() {
  local work=$1 version=${2:-} apt=(apt-get -q -o Dpkg::Use-Pty=0)
  # As root apt hands the download to the _apt user, which cannot write a mktemp
  # directory: say plainly that this download is not sandboxed instead of a warning.
  [ "$(id -u)" -eq 0 ] && apt+=(-o APT::Sandbox::User=root)
  if ! (cd "$work" && "${apt[@]}" download "cloud-init${version:+=$version}") >"$work/apt.log" 2>&1; then
    # CI runs as root on machines whose package lists may be missing or stale.
    if [ "$(id -u)" -eq 0 ] && [ "${CI:-}" = true ]; then
      apt-get -qq update >>"$work/apt.log" 2>&1 || true
      (cd "$work" && "${apt[@]}" download "cloud-init${version:+=$version}") >>"$work/apt.log" 2>&1 || return 1
    else
      return 1
    fi
  fi
  dpkg-deb -x "$work"/cloud-init_*.deb "$work/root"
}

provision() {
  [ -x "$CACHE/root/usr/bin/cloud-init" ] && return 0
  mkdir -p "$(dirname "$CACHE")"
  rm -rf "$CACHE"
  local work
  work=$(mktemp -d "$(dirname "$CACHE")/.cloud-init.XXXXXX")
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    mkdir -p "$CACHE"
    echo "no apt-get/dpkg-deb on this system (Debian or Ubuntu needed)" >"$CACHE/unavailable"
    rm -rf "$work"
  elif unpack_cloud_init "$work"; then
    dpkg-deb -f "$work"/cloud-init_*.deb Version >"$work/version"
    rm -f "$work"/cloud-init_*.deb "$work/apt.log"
    mv "$work" "$CACHE"
    echo "cloud-init $(cat "$CACHE/version") unpacked into $CACHE (not installed)"
    return 0
  else
    mkdir -p "$CACHE"
    echo "apt-get download cloud-init failed: $(grep -E '^(E|W):' "$work/apt.log" | head -1)" >"$CACHE/unavailable"
    rm -rf "$work"
  fi
  echo "judges: cloud-init not available: $(cat "$CACHE/unavailable"); its test will be skipped" >&2
}

refresh_schema() {
  local work version
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  unpack_cloud_init "$work" "${1:-}" || { cat "$work/apt.log" >&2; exit 1; }
  version=$(dpkg-deb -f "$work"/cloud-init_*.deb Version)
  cp "$work/root/$SCHEMA_MEMBER" "$VENDORED/schema-cloud-config-v1.json"
  cat >"$VENDORED/source.json" <<EOF
{
  "package": "cloud-init",
  "version": "$version",
  "from": "Debian package cloud-init $version (apt-get download), $SCHEMA_MEMBER",
  "deb_sha256": "$(sha256sum "$work"/cloud-init_*.deb | cut -d' ' -f1)",
  "schema_sha256": "$(sha256sum "$VENDORED/schema-cloud-config-v1.json" | cut -d' ' -f1)",
  "refresh": "scripts/judges.sh refresh-schema [VERSION]"
}
EOF
  echo "vendored cloud-init $version's cloud-config schema into $VENDORED"
}

case "${1:-}" in
  cloud-init) provision ;;
  refresh-schema) refresh_schema "${2:-}" ;;
  *) echo "usage: $0 cloud-init | refresh-schema [VERSION]" >&2; exit 2 ;;
esac
