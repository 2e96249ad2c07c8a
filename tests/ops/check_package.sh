#!/usr/bin/env bash
# Checks the .deb that `cpack -G DEB` built in BUILD_DIR: its name, control
# fields (dependencies from dpkg-shlibdeps, maintainer scripts, conffiles),
# its files (binaries, units, docs, config), and `systemd-analyze verify`
# on its units (with ExecStart pointing into the unpacked package).
# Usage: check_package.sh BUILD_DIR VERSION
set -euo pipefail
build=$1 version=$2
deb="$build/joule_${version}_amd64.deb"
fail() { echo "check_package: $*" >&2; exit 1; }
[ -f "$deb" ] || fail "$deb not built"
info=$(dpkg-deb -I "$deb")
contents=$(dpkg-deb -c "$deb")
for field in "Package: joule" "Version: $version" "Architecture: amd64" \
    "libgrpc++1.51" "libprotobuf32" "libsystemd0" "adduser" \
    postinst prerm conffiles; do
  grep -qF -- "$field" <<<"$info" || fail "control lacks '$field'"
done
for f in ./usr/bin/jouled ./usr/bin/joule-agent ./usr/bin/joulectl \
    ./usr/bin/joule-job-supervisor \
    ./usr/lib/systemd/system/jouled.service \
    ./usr/lib/systemd/system/joule-agent.service \
    ./etc/joule/cluster.conf ./etc/default/jouled ./etc/default/joule-agent \
    ./usr/share/doc/joule/operations.md ./usr/share/doc/joule/img/dashboard.png \
    ./usr/share/doc/joule/ops/prometheus/alerts.yml \
    ./usr/share/doc/joule/ops/grafana/joule-dashboard.json; do
  grep -qE -- " $f\$" <<<"$contents" || fail "package lacks $f"
done
if "$build/bin/joulectl" completion bash >/dev/null 2>&1; then
  grep -qE " ./usr/share/bash-completion/completions/joulectl\$" <<<"$contents" ||
    fail "package lacks the bash completion"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root"
dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/joule/cluster.conf "$tmp/control/conffiles" || fail "cluster.conf is not a conffile"
"$tmp/root/usr/bin/jouled" --help >/dev/null || fail "packaged jouled does not run"
if ! command -v systemd-analyze >/dev/null; then
  echo "check_package: systemd-analyze missing: units not verified" >&2
  exit 0
fi
mkdir "$tmp/units"
for u in jouled joule-agent; do
  unit="$tmp/root/usr/lib/systemd/system/$u.service"
  grep -qx "Type=notify" "$unit" || fail "$u.service is not Type=notify"
  grep -q "^WatchdogSec=" "$unit" || fail "$u.service has no WatchdogSec"
  sed "s|/usr/bin/|$tmp/root/usr/bin/|g" "$unit" >"$tmp/units/$u.service"
done
out=$(systemd-analyze verify "$tmp/units/jouled.service" \
  "$tmp/units/joule-agent.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
echo "check_package: $deb ok"
