#!/bin/sh
# Certificates for the trainer link's mutual TLS (launch/zenoh/trainer-*.json5).
#
#   launch/zenoh/make-trainer-certs.sh OUT_DIR TRAINER_HOST [ROBOT_ID ...]
#
# TRAINER_HOST is the name or IP robots connect to (the host in
# trainer-robot.json5's `tls/<host>:7447`); it goes into the router
# certificate's SAN, with localhost and 127.0.0.1 for the sink on the same
# machine. Writes, ready to copy to /etc/sarm/tls/ on each machine:
#   OUT_DIR/ca/ca.pem, ca.key             the CA: keep ca.key offline
#   OUT_DIR/trainer/ca.pem                for the router and the sink
#   OUT_DIR/trainer/router.pem, router.key    CN TRAINER_HOST, serverAuth
#   OUT_DIR/trainer/sink.pem, sink.key        CN sarm-sink, clientAuth
#   OUT_DIR/<robot_id>/ca.pem, robot.pem, robot.key   CN <robot_id>, clientAuth
# Run it again with new robot ids to add robots: an existing CA (and
# existing router, sink and robot certificates) is kept, not replaced
# (delete a certificate's files to remake it). Then add each new robot to
# trainer-router.json5's access control.
#
# Keys are EC P-256 (PKCS#8); certificates last SARM_CERT_DAYS days
# (default 825), the CA SARM_CA_DAYS (default 3650).
set -eu

if [ $# -lt 2 ]; then
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
out=$1
host=$2
shift 2
for robot in "$@"; do
    # A robot id is one Zenoh key chunk (see TrainerKeys).
    case $robot in
        "" | trainer | ca | sarm-sink | */* | *[*\$?#\ ]*)
            echo "bad robot id: '$robot'" >&2
            exit 1
            ;;
    esac
done
days=${SARM_CERT_DAYS:-825}
ca_days=${SARM_CA_DAYS:-3650}

command -v openssl >/dev/null || { echo "openssl is needed" >&2; exit 1; }
umask 077
mkdir -p "$out/ca" "$out/trainer"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

if [ ! -f "$out/ca/ca.key" ]; then
    key "$out/ca/ca.key"
    openssl req -x509 -new -key "$out/ca/ca.key" -out "$out/ca/ca.pem" \
        -days "$ca_days" -subj "/CN=sarm trainer-link CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    echo "made the CA: $out/ca/ca.pem"
fi

# leaf DIR NAME CN EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
leaf() {
    dir=$1 name=$2 cn=$3 eku=$4 san=${5:-}
    mkdir -p "$dir"
    cp "$out/ca/ca.pem" "$dir/ca.pem"
    if [ -f "$dir/$name.pem" ]; then
        echo "kept $dir/$name.pem"
        return
    fi
    key "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$cn" -out "$tmp/$name.csr"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$tmp/$name.ext"
    openssl x509 -req -in "$tmp/$name.csr" -CA "$out/ca/ca.pem" -CAkey "$out/ca/ca.key" \
        -CAcreateserial -CAserial "$out/ca/ca.srl" -days "$days" \
        -extfile "$tmp/$name.ext" -out "$dir/$name.pem" 2>/dev/null
    echo "made $dir/$name.pem (CN $cn)"
}

case $host in
    *[!0-9.]*) case $host in *:*) host_san="IP:$host" ;; *) host_san="DNS:$host" ;; esac ;;
    *) host_san="IP:$host" ;;
esac
leaf "$out/trainer" router "$host" serverAuth "$host_san,DNS:localhost,IP:127.0.0.1"
leaf "$out/trainer" sink sarm-sink clientAuth

for robot in "$@"; do
    leaf "$out/$robot" robot "$robot" clientAuth
done
