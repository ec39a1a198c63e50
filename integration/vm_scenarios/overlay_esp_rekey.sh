# Early rekey, the MTU and a third host, after overlay_esp_hosts.sh run with three hosts, a soft lifetime
# of $SOFT packets on every state, an hour-long epoch (so every key change here is a rekey, not a rotation)
# and a $UNDERLAY_MTU-byte underlay.

check add_c1_on_h1 add 1 enc c1
check add_c2_on_h2 add 2 enc c2
check add_c3_on_h3 add 3 enc c3
C1=$(ip_of c1); C2=$(ip_of c2); C3=$(ip_of c3)
check encrypted_c1_reaches_c2 wait_for 60 ip netns exec c1 ping -c 1 -W 1 $C2
check encrypted_c3_reaches_c1 wait_for 60 ip netns exec c3 ping -c 1 -W 1 $C1
check encrypted_c3_reaches_c2 wait_for 60 ip netns exec c3 ping -c 1 -W 1 $C2

# The containers' MTU is the underlay's minus VXLAN (50) and ESP (40); a DF ping of exactly that size
# crosses, one byte more is refused at the sender (never fragmented), and nothing on the wire is a fragment.
MTU=$((UNDERLAY_MTU - 90))
GOT=$(ip netns exec c1 cat /sys/class/net/eth0/mtu)
check container_mtu_is_the_underlays_minus_vxlan_and_esp sh -c "echo mtu=$GOT; [ '$GOT' = $MTU ]"
reset_wire
check df_ping_of_the_full_mtu_crosses ip netns exec c1 /usr/sbin/iputils-ping -M do -c 3 -W 2 -s $((MTU - 28)) $C2
check_fails df_ping_one_byte_over_is_refused ip netns exec c1 /usr/sbin/iputils-ping -M do -c 1 -W 2 -s $((MTU - 27)) $C2
# sending HOST PEER: the SPI and the key hN sends to the peer with (the SPI alone comes back every third
# generation: SPIs are assigned over generation slots).
sending() { ip -n h$1 xfrm state list src 192.168.50.$1 dst 192.168.50.$2 | awk '/spi/ { print $4 } /aead/ { print substr($3, 1, 18) }' | tr '\n' ' '; }
OUT0=$(sending 1 2)
check soft_lifetime_on_the_states sh -c "/sbin/ip -s -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | grep 'soft $SOFT(packets)'"

# Pings every 0.1 s and a TCP transfer paced over the same 20 s: every $SOFT packets a state passes its soft
# lifetime and its sender moves the pair one generation on. The transfer's segments are full-size.
ROUNDS=200
start_transfer $((ROUNDS / 2))
ip netns exec c3 ping -c $ROUNDS -i 0.1 -W 2 $C1 > /tmp/ping3 2>&1 &
PING3=$!
PING=$(ip netns exec c1 ping -c $ROUNDS -i 0.1 -W 2 $C2 | tail -2 | tr '\n' ' ')
transfer_done
wait $PING3
echo "ping: $PING"
echo "ping c3 -> c1: $(tail -2 /tmp/ping3 | tr '\n' ' ')"
check tcp_transfer_across_early_rekeys_delivers_every_byte sh -c "echo received $GOT of $((ROUNDS / 2 * 16 * 1024)); [ $GOT -eq $((ROUNDS / 2 * 16 * 1024)) ]"
check no_ping_lost_across_early_rekeys sh -c "echo '$PING' | grep -q ' 0% packet loss'"
check no_ping_lost_from_the_third_host grep -q ' 0% packet loss' /tmp/ping3
OUT1=$(sending 1 2)
check early_rekey_changed_the_sending_key sh -c "echo before $OUT0 after $OUT1; [ '$OUT0' != '$OUT1' ]"
# Generation 4 and on reuse the SPI slots of 1 and on: the receiver replaced those states' keys in place.
# h1 -> h2 and h2 -> h1 carry the most (the transfer and the pings).
for H in 1 2; do
    P=$((3 - H))
    REKEYS=$(grep 'early rekey' /tmp/h$H/tetherd.log | grep "peer=192.168.50.$P ")
    LAST=$(echo "$REKEYS" | tail -1 | grep -o 'generation=[0-9]*' | cut -d= -f2)
    check h${H}_rekeyed_past_the_spi_slots sh -c "echo $(echo "$REKEYS" | grep -c rekey) rekeys toward h$P, last generation ${LAST:-none}; [ ${LAST:-0} -ge 4 ]"
done
# Three epochs times three generations from each rekeyed peer.
for P in 2 3; do
    check h1_holds_nine_states_from_h$P sh -c "n=\$(/sbin/ip -n h1 xfrm state list src 192.168.50.$P dst 192.168.50.1 | grep -c '^src'); echo \$n; [ \$n -eq 9 ]"
done
VX=$(wire vxlan); ESP=$(wire esp); FRAG=$(wire frag)
check rekeyed_traffic_stays_esp sh -c "echo esp=$ESP vxlan=$VX; [ $ESP -gt $ROUNDS ] && [ $VX -eq 0 ]"
check full_size_segments_cross_unfragmented sh -c "echo fragments=$FRAG; [ $FRAG -eq 0 ]"
for H in 1 2 3; do
    check h${H}_no_sequence_errors ip netns exec h$H sh -c "grep -E 'XfrmOutStateSeqError|XfrmInStateSeqError|XfrmInNoStates|XfrmInStateProtoError' /proc/net/xfrm_stat | tr '\n' ' '; awk '/XfrmOutStateSeqError|XfrmInStateSeqError|XfrmInNoStates|XfrmInStateProtoError/ { n += \$2 } END { exit n != 0 }' /proc/net/xfrm_stat"
done

kill $(cat /tmp/h1/tetherd.pid) $(cat /tmp/h2/tetherd.pid) $(cat /tmp/h3/tetherd.pid)
echo "--- h1 tetherd log tail"; tail -15 /tmp/h1/tetherd.log
