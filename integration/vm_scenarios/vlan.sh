# VLAN scenario for tether-macvlan, sourced by /init (which provides ip, check, check_fails) after
# vlan_switch.sh (netns, switch_vlan, up0, reaches, fails_to_reach, link_exists, vlan_id_is). The plugin
# runs as a runtime runs it: CNI_* environment, config on stdin.

STATE=/tmp/tether
export TETHER_STATE_DIR=$STATE/state TETHER_RUN_DIR=$STATE/run CNI_PATH=/opt/cni/bin
mkdir -p "$STATE/conf"

# network NAME 'MASTER FIELDS' SUBNET_PREFIX RANGE_FIRST RANGE_LAST: a tether-macvlan network config.
network() {
    cat > "$STATE/conf/$1.json" <<JSON
{"cniVersion": "1.1.0", "name": "$1", "type": "tether-macvlan", $2, "mode": "bridge",
 "ipam": {"type": "tether-ipam", "subnet": "$3.0/24", "rangeStart": "$3.$4", "rangeEnd": "$3.$5",
          "gateway": "$3.1", "dataDir": "$STATE/ipam"}}
JSON
}
network v10  '"master": "up0", "vlan": 10' 10.10.0 10 49
# A second network on the same VLAN: the sub-interface stays until both have left.
network v10b '"master": "up0", "vlan": 10' 10.10.0 50 99
# The eth0.N form: a master that does not exist yet, read as VLAN 20 on up0.
network v20  '"master": "up0.20"' 10.20.0 10 49
# up0.30 is made by hand below, before any ADD: the user's, never to be deleted by tether.
network v30  '"master": "up0.30"' 10.30.0 10 49

# plugin CMD NET CONTAINER: one tether-macvlan call with the container's namespace as eth0.
plugin() {
    CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_NETNS=/run/netns/$3 CNI_IFNAME=eth0 \
        /opt/cni/bin/tether-macvlan < "$STATE/conf/$2.json"
}
# add NET CONTAINER: a new container namespace attached to NET; prints the address it got.
add() {
    netns "$2" || return 1
    out=$(plugin ADD "$1" "$2") || { echo "$out"; return 1; }
    echo "$out" | tr -d ' \n' | grep -o '"address":"[^"]*"'
}
del() { plugin DEL "$1" "$2"; }
# gc_all NET: GC of NET with no valid attachment, as a runtime that lost every container sends it.
gc_all() {
    sed 's/^{/{"cni.dev\/valid-attachments": [], /' "$STATE/conf/$1.json" | CNI_COMMAND=GC /opt/cni/bin/tether-macvlan
}
addr_of() { ip -n "$1" -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }'; }

# add_refused NET CONTAINER WORDS: the ADD fails and its CNI error message contains WORDS.
add_refused() {
    netns "$2" || return 1
    if out=$(plugin ADD "$1" "$2"); then echo "ADD succeeded: $out"; return 1; fi
    echo "$out" | grep -o '"msg": *"[^"]*"' | grep -F "$3" || { echo "$out"; return 1; }
}
# no_lease_in NET: NET's IPAM store exists (the ADD got that far) and holds no address file.
no_lease_in() { ls "$STATE/ipam/$1" && ! ls "$STATE/ipam/$1" | grep -E '^[0-9]+[.]'; }

# First without 8021q, before any VLAN link exists (unloading the module deletes every VLAN link). The
# initramfs has no modules.alias, so the kernel cannot autoload it back.
rmmod 8021q || echo "RESULT modules FAIL cannot unload 8021q for the refused-ADD checks"
check add_without_8021q_names_the_missing_feature add_refused v10 c10x "802.1Q"
check_fails no_subif_left_by_the_refused_add link_exists up0.10
check no_lease_left_by_the_refused_add no_lease_in v10
insmod "/lib/modules/$(uname -r)/kernel/net/8021q/8021q.ko"
grep -q '^8021q ' /proc/modules || echo "RESULT modules FAIL cannot load 8021q again"

for v in 10 20 30; do switch_vlan $v; done

check add_v10_c1 add v10 c10a
check subif_v10_created_as_8021q_id_10 vlan_id_is up0.10 10
check add_v10_c2 add v10 c10b
check add_v10b_c1 add v10b c10c
check add_v20_c1 add v20 c20a
check subif_v20_created_as_8021q_id_20 vlan_id_is up0.20 20

check v10_reaches_own_gateway reaches c10a 10.10.0.1
check v10b_reaches_own_gateway reaches c10c 10.10.0.1
check v20_reaches_own_gateway reaches c20a 10.20.0.1
check v10_containers_reach_each_other reaches c10a "$(addr_of c10b)"
check_fails v10_cannot_reach_v20_gateway fails_to_reach c10a 10.20.0.1
# Even with a route straight onto the link: the ARP request leaves tagged 10, and only VLAN 20's
# gateway holds the address, so nothing answers.
ip -n c10a route add 10.20.0.0/24 dev eth0
check_fails v10_cannot_reach_v20_gateway_onlink fails_to_reach c10a 10.20.0.1
check_fails v20_cannot_reach_v10_container fails_to_reach c20a "$(addr_of c10a)"

check del_v10_c1 del v10 c10a
check subif_v10_kept_while_v10_has_containers link_exists up0.10
check del_v10_c2 del v10 c10b
check subif_v10_kept_while_v10b_uses_it link_exists up0.10
check v10b_still_reaches_gateway reaches c10c 10.10.0.1
check del_v10b_c1 del v10b c10c
check_fails subif_v10_gone_after_last_network_left link_exists up0.10

check v20_unaffected_by_v10_removal reaches c20a 10.20.0.1
check gc_v20_without_valid_attachments gc_all v20
check_fails subif_v20_gone_after_gc link_exists up0.20

ip link add link up0 name up0.30 type vlan id 30
ip link set up0.30 up
check add_v30_on_user_subif add v30 c30a
check v30_reaches_own_gateway reaches c30a 10.30.0.1
check del_v30_c1 del v30 c30a
check user_subif_v30_kept_after_last_del vlan_id_is up0.30 30
