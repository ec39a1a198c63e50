# Encrypted against plain over the same two hosts and the same path, after overlay_esp_hosts.sh: ping RTT and
# one TCP stream. TCG emulates the CPU, so only the ratio between the two means anything.
add 1 enc c1 >/dev/null; add 2 enc c2 >/dev/null; add 2 plain c3 >/dev/null; add 1 plain c4 >/dev/null
C2=$(ip_of c2); C3=$(ip_of c3)
check bench_encrypted_path_up wait_for 60 ip netns exec c1 ping -c 1 -W 1 $C2
check bench_plain_path_up wait_for 60 ip netns exec c4 ping -c 1 -W 1 $C3
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# rtt CLIENT ADDR: the average of 50 pings, ms.
rtt() { ip netns exec $1 ping -q -c 50 -i 0.1 $2 | awk -F/ '/min\/avg\/max/ { print $4 }'; }
# tcp CLIENT SERVER ADDR: MiB/s of 16 MiB over one connection.
tcp() {
    # stdin that never ends: nc half-closes on stdin EOF, and the sender quits on that (see overlay_esp.sh).
    [ -p /tmp/hold ] || mkfifo /tmp/hold
    ip netns exec $2 sh -c "nc -l -p 5002 0<>/tmp/hold > /dev/null" &
    server=$!
    sleep 1
    t0=$(uptime_s)
    ip netns exec $1 sh -c "dd if=/dev/zero bs=65536 count=256 2>/dev/null | nc $3 5002"
    wait $server
    t1=$(uptime_s)
    awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", 16 / (b - a) }'
}
# Side by side, alternating, three rounds (absolute numbers drift from run to run).
for round in 1 2 3; do
    echo "BENCH rtt_ms encrypted $(rtt c1 $C2)"
    echo "BENCH rtt_ms plain $(rtt c4 $C3)"
    echo "BENCH tcp_mib_s encrypted $(tcp c1 c2 $C2)"
    echo "BENCH tcp_mib_s plain $(tcp c4 c3 $C3)"
done
kill $(cat /tmp/h1/tetherd.pid) $(cat /tmp/h2/tetherd.pid)
