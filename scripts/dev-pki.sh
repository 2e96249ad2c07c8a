#!/usr/bin/env bash
# Creates a development PKI for Joule with the openssl command line:
#   DIR/ca.crt, DIR/ca.key            the cluster CA (signs everything below)
#   DIR/server.crt, DIR/server.key    jouled's certificate: SAN 127.0.0.1,
#                                     ::1 and localhost, extendedKeyUsage
#                                     serverAuth only
#   DIR/NODE.crt, DIR/NODE.key        one agent certificate per NODE: CN=NODE,
#                                     extendedKeyUsage clientAuth only
# Usage: scripts/dev-pki.sh DIR [NODE...]
# Existing files are kept (a CA is created once per DIR), so the script can
# be re-run to add nodes. Keys are 0600. For development and tests: a real
# cluster's CA key lives offline (see docs/security.md).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [NODE...]" >&2
  exit 2
fi
dir=$1
shift
mkdir -p "$dir"
umask 077
days=${JOULE_PKI_DAYS:-825}

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

if [ ! -f "$dir/ca.crt" ]; then
  key "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
    -subj "/O=Joule/CN=Joule development CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt" 2>/dev/null
fi

# sign NAME SUBJECT EXTFILE-CONTENT
sign() {
  local name=$1 subj=$2 ext=$3
  [ -f "$dir/$name.crt" ] && return 0
  key "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "$subj" \
    -out "$dir/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" \
    -CAkey "$dir/ca.key" -CAcreateserial -sha256 -days "$days" \
    -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

sign server "/O=Joule/CN=jouled" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"

for node in "$@"; do
  case "$node" in
    ""|.|..|*/*|*[!A-Za-z0-9._-]*)
      echo "$0: node name \"$node\": want [A-Za-z0-9._-], not . or .." >&2
      exit 2 ;;
  esac
  [ "$node" = server ] || [ "$node" = ca ] && {
    echo "$0: node name \"$node\" is reserved" >&2; exit 2; }
  sign "$node" "/O=Joule nodes/CN=$node" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
done
chmod 0644 "$dir"/*.crt
echo "dev-pki: CA and certificates in $dir" >&2
