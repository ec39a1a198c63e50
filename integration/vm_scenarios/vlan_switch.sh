# The VLAN switch of the VLAN scenarios (prepended to vlan.sh and docker_vlan.sh). The VM's own namespace
# is the container host. Its uplink up0 is a veth whose peer sw0 sits in a "switch" namespace; there each
# VLAN's sub-interface sw0.N takes the tag off and is moved into its own gateway namespace gwN (10.N.0.1),
# so the only way from one VLAN to another VLAN's gateway would be a frame carrying the wrong tag.

netns() { ip netns add "$1" && ip -n "$1" link set lo up; }

# switch_vlan N: VLAN N's gateway 10.N.0.1 behind the switch.
switch_vlan() {
    netns gw$1
    ip -n sw link add link sw0 name sw0.$1 type vlan id $1
    ip -n sw link set sw0.$1 netns gw$1
    ip -n gw$1 addr add 10.$1.0.1/24 dev sw0.$1
    ip -n gw$1 link set sw0.$1 up
}

netns sw
ip link add up0 type veth peer name sw0 netns sw
ip link set up0 up
ip -n sw link set sw0 up

# Three tries: under TCG on a loaded machine the first echo (behind ARP) can be slow.
reaches() {
    for _ in 1 2 3; do ip netns exec "$1" ping -c 1 -W 2 "$2" && return 0; done
    return 1
}
fails_to_reach() { ip netns exec "$1" ping -c 1 -W 2 "$2"; }
link_exists() { test -e "/sys/class/net/$1"; }
vlan_id_is() { ip -d link show "$1" | grep "vlan protocol 802.1Q id $2 "; }
