#!/usr/bin/env bash
# A first look at tether: two throwaway containers (network namespaces) on a tether-bridge network inside a
# throwaway "host" namespace, their addresses, traffic between them and out through masquerade, then DEL.
# Touches nothing of this machine's own interfaces, routes or nftables. Run as root after `cargo build --release`.
set -euo pipefail
bin=${TETHER_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
tag=$$
host=td-host-$tag; out=td-out-$tag; c1=td-c1-$tag; c2=td-c2-$tag
work=$(mktemp -d /tmp/tether-demo.XXXXXX)
cleanup() {
  for ns in $c1 $c2 $out $host; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for ns in $host $out $c1 $c2; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
# An "outside" machine on 198.51.100.0/24 (TEST-NET-2) with no route back to the containers: its replies
# only come back when masquerade works.
ip -n $host link add uplink type veth peer name eth0 netns $out
ip -n $host addr add 198.51.100.1/24 dev uplink && ip -n $host link set uplink up
ip -n $out addr add 198.51.100.2/24 dev eth0 && ip -n $out link set eth0 up

conf=$(cat <<JSON
{"cniVersion":"1.1.0","name":"demo","type":"tether-bridge","bridge":"tdemo0","isDefaultGateway":true,
 "ipMasq":true,"ipam":{"type":"tether-ipam","subnet":"10.77.0.0/24","dataDir":"$work/ipam"}}
JSON
)
cni() { # cni COMMAND CONTAINER_NS
  echo "$conf" | nsenter --net=/run/netns/$host env -i PATH="$PATH" TETHER_STATE_DIR=$work/state \
    TETHER_RUN_DIR=$work/run CNI_PATH="$bin" CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=/run/netns/$2 \
    CNI_IFNAME=eth0 "$bin/tether-bridge"
}
for c in $c1 $c2; do
  start=$(date +%s%N); res=$(cni ADD $c); end=$(date +%s%N)
  ip=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"])')
  printf '%-14s eth0 %-16s (ADD took %d ms)\n' "$c" "$ip" $(( (end-start)/1000000 ))
done
ip2=$(ip -n $c2 -j addr show eth0 | python3 -c 'import json,sys; print([a["local"] for a in json.load(sys.stdin)[0]["addr_info"] if a["family"]=="inet"][0])')
echo "--- $c1 -> $c2 ($ip2)"; ip netns exec $c1 ping -c2 -W1 -q "$ip2" | tail -2
echo "--- $c1 -> outside 198.51.100.2 (masqueraded)"; ip netns exec $c1 ping -c2 -W1 -q 198.51.100.2 | tail -2
echo "--- nftables table inet tether in the host namespace"; ip netns exec $host nft list table inet tether
for c in $c1 $c2; do cni DEL $c; done
echo "--- after DEL: links left in the host namespace"; ip -n $host -br link
