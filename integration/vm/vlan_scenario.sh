# VLAN scenario, sourced by /init (which provides ip, check, check_fails).
#
# The VM's own namespace is the container host. Its uplink up0 is a veth whose peer sw0 sits in a
# "switch" namespace; there, sw0.10 and sw0.20 take the tags off and each is moved into its own gateway
# namespace (gw10: 10.10.0.1, gw20: 10.20.0.1), so the only path between a VLAN and the other VLAN's
# gateway would be a frame with the wrong tag.

netns() { ip netns add "$1" && ip -n "$1" link set lo up; }

netns sw; netns gw10; netns gw20
ip link add up0 type veth peer name sw0 netns sw
ip link set up0 up
ip -n sw link set sw0 up
for v in 10 20; do
    ip -n sw link add link sw0 name sw0.$v type vlan id $v
    ip -n sw link set sw0.$v netns gw$v
    ip -n gw$v addr add 10.$v.0.1/24 dev sw0.$v
    ip -n gw$v link set sw0.$v up
done

# --- containers (placeholder until tether-macvlan has VLAN parents: the sub-interface made by hand)
cni_add() {  # NET(vlan id) CONTAINER ADDR
    v=$1; c=$2; netns "$c"
    [ -e /sys/class/net/up0.$v ] || { ip link add link up0 name up0.$v type vlan id $v && ip link set up0.$v up; }
    ip link add link up0.$v name mv-$c type macvlan mode bridge &&
    ip link set mv-$c netns "$c" &&
    ip -n "$c" link set mv-$c name eth0 &&
    ip -n "$c" addr add "$3/24" dev eth0 &&
    ip -n "$c" link set eth0 up &&
    ip -n "$c" route add default via 10.$v.0.1
}
cni_del() {  # NET CONTAINER
    ip netns del "$2"
    sleep 0.2
    [ -n "$(ls /sys/class/net/up0.$1/ 2>/dev/null | grep '^upper_')" ] || ip link del up0.$1 2>/dev/null
    true
}

ping1() { ip netns exec "$1" ping -c 1 -W 2 "$2"; }

check add_v10_c1 cni_add 10 c10a 10.10.0.10
check add_v10_c2 cni_add 10 c10b 10.10.0.11
check add_v20_c1 cni_add 20 c20a 10.20.0.10
check subif_v10_is_8021q_id_10 sh -c "/sbin/ip -d link show up0.10 | grep 'vlan protocol 802.1Q id 10 '"
check v10_reaches_own_gateway ping1 c10a 10.10.0.1
check v20_reaches_own_gateway ping1 c20a 10.20.0.1
check_fails v10_cannot_reach_v20_gateway ping1 c10a 10.20.0.1
# A route straight onto the link: the ARP request goes out tagged 10, and only VLAN 20's gateway has
# the address, so nothing answers.
ip -n c10a route add 10.20.0.0/24 dev eth0
check_fails v10_cannot_reach_v20_gateway_onlink ping1 c10a 10.20.0.1
check_fails v20_cannot_reach_v10_container ping1 c20a 10.10.0.10

check del_v10_c1 cni_del 10 c10a
check subif_kept_while_v10_has_containers test -e /sys/class/net/up0.10
check del_v10_c2 cni_del 10 c10b
check_fails subif_gone_after_last_v10_container test -e /sys/class/net/up0.10
check v20_unaffected ping1 c20a 10.20.0.1
