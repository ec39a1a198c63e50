# Encrypted overlay scenario, sourced by /init (which provides ip, check, check_fails).
#
# Two simulated hosts h1 (192.168.50.1) and h2 (.2) and an attacker (.9) hang on the bridge fab in the VM's
# own namespace. Each host runs its own tetherd (gossip, data-plane key file, 8 s rotation) and the plugin
# is called inside the host's namespace as a runtime calls it. Network "enc" (VNI 4200, port 4789) is
# encrypted; "plain" (VNI 4300, port 4790) is not and is the control that shows the injection check can
# fail. h2's underlay link carries a netdev ingress table counting ESP and port-4789 UDP off the wire.

KEY=5f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0
DATA_KEY=00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef
ROTATION=8
mkdir -p /etc/tether
echo $DATA_KEY > /etc/tether/data.key

netns() { ip netns add "$1" && ip -n "$1" link set lo up; }
ip link add fab type bridge
ip link set fab up
# underlay HOST_NS ADDRESS: the namespace's up0 on the fabric bridge.
underlay() {
    netns $1
    ip link add up0 netns $1 type veth peer name fab-$1
    ip link set fab-$1 master fab up
    ip -n $1 addr add $2/24 dev up0
    ip -n $1 link set up0 up
}
underlay h1 192.168.50.1
underlay h2 192.168.50.2
underlay att 192.168.50.9

# host_env N: the state and run dirs of host hN.
host_env() { echo "TETHER_STATE_DIR=/tmp/h$1/state TETHER_RUN_DIR=/tmp/h$1/run"; }
start_tetherd() {
    mkdir -p /tmp/h$1
    cat > /tmp/h$1/tetherd.json <<JSON
{"stay": true, "overlay": {"bind": "192.168.50.$1:7946", "peers": ["192.168.50.1:7946", "192.168.50.2:7946"],
 "key": "$KEY", "probePeriodMs": 500, "failureTimeoutMs": 4000, "syncIntervalMs": 1000,
 "reconcileIntervalMs": 300, "encryption": {"keyFile": "/etc/tether/data.key", "rotationIntervalS": $ROTATION}}}
JSON
    # The shell writes its own pid and becomes tetherd: the pid file names tetherd itself.
    ip netns exec h$1 sh -c "echo \$\$ > /tmp/h$1/tetherd.pid; exec env $(host_env $1) RUST_LOG=info \
        /usr/bin/tetherd --stay --config /tmp/h$1/tetherd.json" > /tmp/h$1/tetherd.log 2>&1 &
}
start_tetherd 1
start_tetherd 2

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
rx_of() { ip netns exec $1 cat /sys/class/net/eth0/statistics/rx_packets; }
# wait_for SECONDS CMD...: retries CMD once a second.
wait_for() {
    n=$1; shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1)); [ $n -gt 0 ] || { "$@"; return 1; }
        sleep 1
    done
}

# Fail closed from the first ADD: before h2 has any container, h1 already blocks the port.
check add_c1_on_h1 add 1 enc c1
check block_policy_from_the_first_add sh -c "/sbin/ip -n h1 xfrm policy list | grep -B3 'action block' | grep -q 'dport 4789'"
check input_guard_from_the_first_add sh -c "/sbin/ip netns exec h1 nft list chain inet tether esp_in_4789 | grep 'udp dport 4789 meta ipsec missing drop'"
check add_c2_on_h2 add 2 enc c2
check add_c3_plain_on_h2 add 2 plain c3
check add_c4_plain_on_h1 add 1 plain c4
C1=$(ip_of c1); C2=$(ip_of c2); C3=$(ip_of c3)
C2MAC=$(ip netns exec c2 cat /sys/class/net/eth0/address)
C3MAC=$(ip netns exec c3 cat /sys/class/net/eth0/address)
echo "c1=$C1 c2=$C2 c3=$C3"

# What crosses h2's underlay link, before any decryption (anonymous counters: named ones need nft_objref).
# reset_wire: the counting table made afresh; wire esp|vxlan: its packet count.
reset_wire() {
    ip netns exec h2 nft delete table netdev wire 2>/dev/null
    ip netns exec h2 nft -f - <<NFT
table netdev wire {
    chain in {
        type filter hook ingress device up0 priority -500; policy accept;
        ip protocol esp counter comment "esp"
        udp dport 4789 counter comment "vxlan"
    }
}
NFT
}
wire() {
    ip netns exec h2 nft list chain netdev wire in |
        awk -v what="\"$1\"" '$0 ~ what { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }'
}
reset_wire

check encrypted_c1_reaches_c2 wait_for 60 ip netns exec c1 ping -c 1 -W 1 $C2
check peer_states_are_esp_gcm_with_esn sh -c "/sbin/ip -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | grep -q 'rfc4106(gcm(aes))' && /sbin/ip -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | grep -q 'flag esn'"
check plain_c4_reaches_c3 wait_for 60 ip netns exec c4 ping -c 1 -W 1 $C3
reset_wire
check ten_pings_across ip netns exec c1 ping -c 10 -i 0.2 -W 2 $C2
ESP=$(wire esp); VX=$(wire vxlan)
check underlay_carries_esp sh -c "echo esp=$ESP; [ $ESP -ge 10 ]"
check underlay_carries_no_cleartext_vxlan sh -c "echo vxlan=$VX; [ $VX -eq 0 ]"

# An attacker on the underlay sends cleartext VXLAN straight at c2 (its MAC and address known).
# inject NET VNI PORT MAC ADDR: five pings from the attacker's own VXLAN device into NET's container.
inject() {
    ip -n att link del vx$2 2>/dev/null
    ip -n att link add vx$2 type vxlan id $2 remote 192.168.50.2 local 192.168.50.9 dstport $3 dev up0
    ip -n att addr add $(echo $5 | cut -d. -f1-3).250/24 dev vx$2
    ip -n att link set vx$2 up
    ip -n att neigh replace $5 lladdr $4 dev vx$2 nud permanent
    ip netns exec att ping -c 5 -i 0.2 -W 1 $5 >/dev/null 2>&1
    return 0
}
RX0=$(rx_of c3); inject plain 4300 4790 $C3MAC $C3; RX1=$(rx_of c3)
check cleartext_injection_reaches_a_plain_network sh -c "echo rx $RX0 to $RX1; [ $RX1 -ge $((RX0 + 5)) ]"
RX0=$(rx_of c2); inject enc 4200 4789 $C2MAC $C2; RX1=$(rx_of c2)
check cleartext_injection_into_the_encrypted_network_is_dropped sh -c "echo rx $RX0 to $RX1; [ $RX1 -eq $RX0 ]"

# A missing state drops, never sends in clear: h1's tetherd is paused so it cannot restore the state.
kill -STOP $(cat /tmp/h1/tetherd.pid)
grep -E '^(Name|State)' /proc/$(cat /tmp/h1/tetherd.pid)/status | tr '\n' ' '; echo
for SPI in $(ip -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | awk '/spi/ { print $4 }'); do
    ip -n h1 xfrm state delete src 192.168.50.1 dst 192.168.50.2 proto esp spi $SPI
done
echo "h1 -> h2 states left: $(ip -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | grep -c spi)"
reset_wire
check_fails without_its_state_the_pair_is_cut ip netns exec c1 ping -c 3 -i 0.3 -W 1 $C2
VX=$(wire vxlan)
check nothing_leaked_in_clear_without_the_state sh -c "echo vxlan=$VX; [ $VX -eq 0 ]"
check the_kernel_counted_the_drops ip netns exec h1 sh -c "grep -E 'XfrmOutNoStates|XfrmOutPolBlock' /proc/net/xfrm_stat | tr '\n' ' '; awk '/XfrmOutNoStates|XfrmOutPolBlock/ { n += \$2 } END { exit !(n > 0) }' /proc/net/xfrm_stat"
kill -CONT $(cat /tmp/h1/tetherd.pid)
check tetherd_restores_the_state wait_for 20 ip netns exec c1 ping -c 1 -W 1 $C2

# Rotation: pings every 0.2 s across three epoch changes; none may be lost.
OUT0=$(ip -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | awk '/spi/ { print $4 }' | tr '\n' ' ')
LOSS=$(ip netns exec c1 ping -c $((ROTATION * 3 * 5 + 10)) -i 0.2 -W 2 $C2 | grep -o '[0-9]*% packet loss')
OUT1=$(ip -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | awk '/spi/ { print $4 }' | tr '\n' ' ')
check rotation_changed_the_sending_spi sh -c "echo before $OUT0 after $OUT1; [ '$OUT0' != '$OUT1' ]"
check no_ping_lost_across_three_rotations sh -c "echo $LOSS; [ '$LOSS' = '0% packet loss' ]"
check receive_states_for_three_epochs_per_peer sh -c "n=\$(/sbin/ip -n h1 xfrm state list src 192.168.50.2 dst 192.168.50.1 | grep -c '^src'); echo \$n; [ \$n -eq 3 ]"
check no_sequence_errors ip netns exec h1 sh -c "awk '/XfrmOutStateSeqError|XfrmInStateSeqError/ { n += \$2 } END { print n; exit n != 0 }' /proc/net/xfrm_stat"

kill $(cat /tmp/h1/tetherd.pid) $(cat /tmp/h2/tetherd.pid)
echo "--- h1 tetherd log tail"; tail -15 /tmp/h1/tetherd.log
