# Hosts for the encrypted overlay, sourced by /init (which provides ip, check, check_fails) before
# overlay_esp.sh or overlay_esp_rekey.sh (the tests) or overlay_esp_bench.sh (the bench).
#
# $HOSTS simulated hosts (2 unless set before) h1 (192.168.50.1), h2 (.2), ... and an attacker (.9) hang on
# the bridge fab in the VM's own namespace, over an underlay of $UNDERLAY_MTU bytes (1500 unless set
# before). Each host runs its own tetherd (gossip, data-plane key file, a rotation of $ROTATION seconds, 8
# unless set before, and whatever $ESP_EXTRA adds to the encryption section) and the plugin is called
# inside the host's namespace as a runtime calls it. Network "enc" (VNI 4200, port 4789) is encrypted;
# "plain" (VNI 4300, port 4790) is not and is the control that shows the injection check can fail. h2's
# underlay link carries a netdev ingress table counting ESP, port-4789 UDP and fragments off the wire.
KEY=5f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0
DATA_KEY=00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef
ROTATION=${ROTATION:-8}
mkdir -p /etc/tether
echo $DATA_KEY > /etc/tether/data.key

netns() { ip netns add "$1" && ip -n "$1" link set lo up; }
ip link add fab type bridge
ip link set fab up
# underlay HOST_NS ADDRESS: the namespace's up0 on the fabric bridge.
UNDERLAY_MTU=${UNDERLAY_MTU:-1500}
underlay() {
    netns $1
    ip link add up0 netns $1 mtu $UNDERLAY_MTU type veth peer name fab-$1 mtu $UNDERLAY_MTU
    ip link set fab-$1 master fab up
    ip -n $1 addr add $2/24 dev up0
    ip -n $1 link set up0 up
}
HOSTS=${HOSTS:-2}
for N in $(seq 1 $HOSTS); do underlay h$N 192.168.50.$N; done
underlay att 192.168.50.9
SEEDS=$(for N in $(seq 1 $HOSTS); do printf '"192.168.50.%s:7946",' $N; done)

# host_env N: the state and run dirs of host hN.
host_env() { echo "TETHER_STATE_DIR=/tmp/h$1/state TETHER_RUN_DIR=/tmp/h$1/run"; }
start_tetherd() {
    mkdir -p /tmp/h$1
    cat > /tmp/h$1/tetherd.json <<JSON
{"stay": true, "overlay": {"bind": "192.168.50.$1:7946", "peers": [${SEEDS%,}],
 "key": "$KEY", "probePeriodMs": 500, "failureTimeoutMs": 4000, "syncIntervalMs": 1000,
 "reconcileIntervalMs": 300, "encryption": {"keyFile": "/etc/tether/data.key", "rotationIntervalS": $ROTATION $ESP_EXTRA}}}
JSON
    # The shell writes its own pid and becomes tetherd: the pid file names tetherd itself.
    ip netns exec h$1 sh -c "echo \$\$ > /tmp/h$1/tetherd.pid; exec env $(host_env $1) TETHER_LOG=info \
        /usr/bin/tetherd --stay --config /tmp/h$1/tetherd.json" > /tmp/h$1/tetherd.log 2>&1 &
}
for N in $(seq 1 $HOSTS); do start_tetherd $N; done

conf() {
    cat <<JSON
{"cniVersion": "1.0.0", "name": "$1", "type": "tether-overlay", "vni": $2, "subnet": "$3",
 "underlay": "up0", "egress": false, "encrypted": $4, "vxlanPort": $5}
JSON
}
conf enc 4200 10.42.0.0/24 true 4789 > /tmp/enc.json
conf plain 4300 10.43.0.0/24 false 4790 > /tmp/plain.json

# add HOST NET CONTAINER: ADD in hHOST's namespace; prints the result.
add() {
    netns $3 || return 1
    ip netns exec h$1 env $(host_env $1) CNI_COMMAND=ADD CNI_CONTAINERID=$3 CNI_NETNS=/run/netns/$3 \
        CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin /opt/cni/bin/tether-overlay < /tmp/$2.json
}
ip_of() { ip -n $1 -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }'; }
# wait_for SECONDS CMD...: retries CMD once a second.
wait_for() {
    n=$1; shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1)); [ $n -gt 0 ] || { "$@"; return 1; }
        sleep 1
    done
}

# What h1 puts on h2's underlay link, before any decryption (anonymous counters: named ones need nft_objref).
# reset_wire: the counting table made afresh; wire esp|vxlan|frag: its packet count (frag: any fragment of
# h1's packets, first or later).
reset_wire() {
    ip netns exec h2 nft delete table netdev wire 2>/dev/null
    ip netns exec h2 nft -f - <<NFT
table netdev wire {
    chain in {
        type filter hook ingress device up0 priority -500; policy accept;
        ip saddr 192.168.50.1 ip protocol esp counter comment "esp"
        ip saddr 192.168.50.1 udp dport 4789 counter comment "vxlan"
        ip saddr 192.168.50.1 ip frag-off & 0x3fff != 0 counter comment "frag"
    }
}
NFT
}
wire() {
    ip netns exec h2 nft list chain netdev wire in |
        awk -v what="\"$1\"" '$0 ~ what { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }'
}

# start_transfer CHUNKS: c1 sends CHUNKS x 16 KiB to c2 ($C2) over TCP, one chunk every 0.2 s, in the
# background; transfer_done waits for both ends and sets GOT to how many bytes c2 received (not in a
# $(...): a subshell cannot wait for this shell's jobs).
# The listener's stdin is a FIFO nobody writes (opened read-write, so it never ends): a background job's
# stdin is /dev/null, and nc half-closes on its EOF, which makes the sending nc quit.
start_transfer() {
    rm -f /tmp/hold; mkfifo /tmp/hold
    ip netns exec c2 sh -c "nc -l -p 5001 0<>/tmp/hold | wc -c > /tmp/received" &
    SERVER=$!
    sleep 1
    ip netns exec c1 sh -c "i=0; while [ \$i -lt $1 ]; do dd if=/dev/zero bs=1024 count=16 2>/dev/null; sleep 0.2; i=\$((i + 1)); done | nc $C2 5001" &
    CLIENT=$!
}
transfer_done() { wait $CLIENT; wait $SERVER; GOT=$(cat /tmp/received); }
