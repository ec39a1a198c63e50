# Encrypted overlay checks, after overlay_esp_hosts.sh.

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
# inject NET VNI PORT MAC ADDR: five pings from the attacker's own VXLAN device (address .250) into NET's
# container, counted by the container's own input hook; prints how many arrived.
inject() {
    from=$(echo $5 | cut -d. -f1-3).250
    ip netns exec $1 nft -f - <<NFT
table ip arrivals {
    chain in {
        type filter hook input priority 0; policy accept;
        ip saddr $from counter
    }
}
NFT
    ip -n att link add vx$2 type vxlan id $2 remote 192.168.50.2 local 192.168.50.9 dstport $3 dev up0
    ip -n att addr add $from/24 dev vx$2
    ip -n att link set vx$2 up
    ip -n att neigh replace $5 lladdr $4 dev vx$2 nud permanent
    ip netns exec att ping -c 5 -i 0.2 -W 1 $5 >/dev/null 2>&1
    ip -n att link del vx$2
    ip netns exec $1 nft list table ip arrivals | awk '/packets/ { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }'
}
GOT=$(inject c3 4300 4790 $C3MAC $C3)
check cleartext_injection_reaches_a_plain_network sh -c "echo arrived $GOT of 5; [ '$GOT' = 5 ]"
GOT=$(inject c2 4200 4789 $C2MAC $C2)
check cleartext_injection_into_the_encrypted_network_is_dropped sh -c "echo arrived $GOT of 5; [ '$GOT' = 0 ]"

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

# A peer's policy deleted by hand: the catch-all block holds the port shut until tetherd sets it again.
# h1's tetherd is paused meanwhile: it sets every policy again every 10 s, which could fall inside the pings.
# proto 17: the VM has no /etc/protocols to name it.
kill -STOP $(cat /tmp/h1/tetherd.pid)
ip -n h1 xfrm policy delete src 192.168.50.1/32 dst 192.168.50.2/32 proto 17 dport 4789 dir out
reset_wire
check_fails without_its_policy_the_pair_is_blocked ip netns exec c1 ping -c 2 -i 0.3 -W 1 $C2
VX=$(wire vxlan)
check nothing_leaked_in_clear_without_the_policy sh -c "echo vxlan=$VX; [ $VX -eq 0 ]"
kill -CONT $(cat /tmp/h1/tetherd.pid)
check tetherd_restores_the_policy wait_for 25 ip netns exec c1 ping -c 1 -W 1 $C2

# Rotation: pings every 0.2 s and a TCP transfer paced over the same time, across three epoch changes;
# no ping may be lost and the connection must deliver every byte.
OUT0=$(ip -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | awk '/spi/ { print $4 }' | tr '\n' ' ')
ROUNDS=$((ROTATION * 3 * 5 + 10))
start_transfer $ROUNDS
LOSS=$(ip netns exec c1 ping -c $ROUNDS -i 0.2 -W 2 $C2 | grep -o '[0-9]*% packet loss')
transfer_done
check tcp_transfer_across_three_rotations_delivers_every_byte sh -c "echo received $GOT of $((ROUNDS * 16 * 1024)); [ $GOT -eq $((ROUNDS * 16 * 1024)) ]"
OUT1=$(ip -n h1 xfrm state list src 192.168.50.1 dst 192.168.50.2 | awk '/spi/ { print $4 }' | tr '\n' ' ')
check rotation_changed_the_sending_spi sh -c "echo before $OUT0 after $OUT1; [ '$OUT0' != '$OUT1' ]"
check no_ping_lost_across_three_rotations sh -c "echo $LOSS; [ '$LOSS' = '0% packet loss' ]"
# Three epochs times the peer's generations 0 and 1 (no soft lifetime ran out here).
check receive_states_for_three_epochs_and_two_generations_per_peer sh -c "n=\$(/sbin/ip -n h1 xfrm state list src 192.168.50.2 dst 192.168.50.1 | grep -c '^src'); echo \$n; [ \$n -eq 6 ]"
check no_sequence_errors ip netns exec h1 sh -c "awk '/XfrmOutStateSeqError|XfrmInStateSeqError/ { n += \$2 } END { print n; exit n != 0 }' /proc/net/xfrm_stat"

kill $(cat /tmp/h1/tetherd.pid) $(cat /tmp/h2/tetherd.pid)
echo "--- h1 tetherd log tail"; tail -15 /tmp/h1/tetherd.log
