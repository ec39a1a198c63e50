# 802.1Q parents of the Docker driver `tether-macvlan`, sourced by /init (which provides ip, check,
# check_fails). tetherd --docker-plugin serves its sockets in the VM and curl makes the calls dockerd makes
# (CreateNetwork, CreateEndpoint, Join, Leave, DeleteEndpoint, DeleteNetwork, with dockerd's bodies); the
# script then does dockerd's part of Join: it moves the endpoint's link into a container namespace as eth0
# with the address Docker's IPAM gave. Sourced after vlan_switch.sh (netns, switch_vlan, up0,
# reaches, fails_to_reach, link_exists, vlan_id_is).

STATE=/tmp/tether
export TETHER_STATE_DIR=$STATE/state TETHER_RUN_DIR=$STATE/run
mkdir -p "$STATE" /run/docker/plugins
SOCK=/run/docker/plugins/tether-macvlan.sock

# start_driver: tetherd --docker-plugin in the background (not under `check`: that runs in a subshell).
start_driver() {
    /usr/local/bin/tetherd --docker-plugin >>"$STATE/tetherd.log" 2>&1 &
    DRIVER=$!
}
# answers: the driver answers Activate within 10 s.
answers() {
    for _ in $(seq 100); do
        call Plugin.Activate '{}' && return 0
        sleep 0.1
    done
    return 1
}
stop_driver() { kill "$DRIVER"; wait "$DRIVER"; }

# call API BODY: one plugin call; prints the reply, fails when it carries an error (`Err`).
call() {
    out=$(/usr/bin/curl -sS --unix-socket "$SOCK" -H 'Content-Type: application/json' \
        -d "$2" "http://plugin/$1") || { echo "curl: $out"; return 1; }
    echo "$out"
    ! echo "$out" | grep -q '"Err":"[^"]'
}
# create_net ID PARENT N: a network on PARENT with VLAN N's subnet, as `docker network create -d
# tether-macvlan --subnet 10.N.0.0/24 -o parent=PARENT` sends it.
create_net() {
    call NetworkDriver.CreateNetwork "{\"NetworkID\":\"$1\",\"Options\":{\"com.docker.network.enable_ipv6\":false,\
\"com.docker.network.generic\":{\"parent\":\"$2\"}},\"IPv4Data\":[{\"AddressSpace\":\"LocalDefault\",\
\"Pool\":\"10.$3.0.0/24\",\"Gateway\":\"10.$3.0.1/24\",\"AuxAddresses\":null}],\"IPv6Data\":[]}"
}
delete_net() { call NetworkDriver.DeleteNetwork "{\"NetworkID\":\"$1\"}"; }
# run NET EP ADDRESS: CreateEndpoint and Join, then dockerd's part: the link Join names moves into a new
# namespace EP as eth0 with ADDRESS/24.
run() {
    call NetworkDriver.CreateEndpoint "{\"NetworkID\":\"$1\",\"EndpointID\":\"$2\",\
\"Interface\":{\"Address\":\"$3/24\",\"AddressIPv6\":\"\",\"MacAddress\":\"\"},\"Options\":{}}" || return 1
    joined=$(call NetworkDriver.Join "{\"NetworkID\":\"$1\",\"EndpointID\":\"$2\",\
\"SandboxKey\":\"/run/netns/$2\",\"Options\":{}}") || { echo "$joined"; return 1; }
    src=$(echo "$joined" | grep -o '"SrcName":"[^"]*"' | cut -d'"' -f4)
    [ -n "$src" ] || { echo "no SrcName in $joined"; return 1; }
    echo "$src" > "$STATE/$2.src"
    netns "$2" && ip link set "$src" netns "$2" && ip -n "$2" link set "$src" name eth0 &&
        ip -n "$2" addr add "$3/24" dev eth0 && ip -n "$2" link set eth0 up
}
# stop NET EP: the container goes; dockerd moves the link back out under its own name first, then
# calls Leave and DeleteEndpoint.
stop() {
    src=$(cat "$STATE/$2.src")
    ip -n "$2" link set eth0 down && ip -n "$2" link set eth0 name "$src" &&
        ip -n "$2" link set "$src" netns 1 || return 1
    ip netns del "$2"
    call NetworkDriver.Leave "{\"NetworkID\":\"$1\",\"EndpointID\":\"$2\"}" || return 1
    call NetworkDriver.DeleteEndpoint "{\"NetworkID\":\"$1\",\"EndpointID\":\"$2\"}"
}
refused_naming() { if out=$(create_net "$1" "$2" "$3"); then echo "accepted: $out"; return 1; fi; echo "$out" | grep -F "$4"; }

start_driver
check driver_answers answers

# Without 8021q first: the network is refused by name and leaves nothing.
rmmod 8021q || echo "RESULT modules FAIL cannot unload 8021q for the refused-create checks"
check create_without_8021q_names_the_missing_feature refused_naming nx up0.10 10 "802.1Q"
check_fails no_subif_left_by_the_refused_create link_exists up0.10
insmod "/lib/modules/$(uname -r)/kernel/net/8021q/8021q.ko"
grep -q '^8021q ' /proc/modules || echo "RESULT modules FAIL cannot load 8021q again"

for v in 10 20 30; do switch_vlan $v; done

check create_n10_makes_the_subif create_net n10 up0.10 10
check subif_10_is_8021q_id_10 vlan_id_is up0.10 10
check create_n10b_on_the_same_subif create_net n10b up0.10 10
check create_n20 create_net n20 up0.20 20
check subif_20_is_8021q_id_20 vlan_id_is up0.20 20
check run_c10a run n10 c10a 10.10.0.10
check run_c10b run n10b c10b 10.10.0.11
check run_c20a run n20 c20a 10.20.0.10
check c10a_reaches_own_gateway reaches c10a 10.10.0.1
check c20a_reaches_own_gateway reaches c20a 10.20.0.1
check c10a_reaches_c10b reaches c10a 10.10.0.11
check_fails c10a_cannot_reach_v20_gateway fails_to_reach c10a 10.20.0.1
ip -n c10a route add 10.20.0.0/24 dev eth0
check_fails c10a_cannot_reach_v20_gateway_onlink fails_to_reach c10a 10.20.0.1

check stop_c10a stop n10 c10a
check rm_n10 delete_net n10
check subif_10_kept_while_n10b_uses_it link_exists up0.10
check c10b_still_reaches_gateway reaches c10b 10.10.0.1
check stop_c10b stop n10b c10b
check rm_n10b delete_net n10b
check_fails subif_10_gone_with_its_last_network link_exists up0.10
check c20a_unaffected reaches c20a 10.20.0.1
# A restarted driver still knows the sub-interface is its own (the registry is on disk).
stop_driver
start_driver
check driver_answers_after_restart answers
check stop_c20a_after_restart stop n20 c20a
check rm_n20_after_restart delete_net n20
check_fails subif_20_gone_after_restart_and_rm link_exists up0.20

# A sub-interface the user made is used and never deleted.
ip link add link up0 name up0.30 type vlan id 30
ip link set up0.30 up
check create_n30_on_user_subif create_net n30 up0.30 30
check run_c30a run n30 c30a 10.30.0.10
check c30a_reaches_own_gateway reaches c30a 10.30.0.1
check stop_c30a stop n30 c30a
check rm_n30 delete_net n30
check user_subif_30_kept vlan_id_is up0.30 30
check_fails no_vlan_record_left sh -c "ls $TETHER_STATE_DIR/vlan/*.json"
check_fails no_endpoint_link_left_on_the_host sh -c "ip -o link | grep -E '^[0-9]+: tm'"
stop_driver
echo "--- tetherd log"; tail -20 "$STATE/tetherd.log"
