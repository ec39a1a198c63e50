# Pings under a paced transfer between two hosts, after overlay_esp_hosts.sh (run once with tetherd's
# default soft lifetimes and once with tiny ones, by bench/overlay_esp_rekey.rs): RTT average, 99th
# percentile and maximum, pings lost, and how many early rekeys h1 made. TCG emulates the CPU: only the
# comparison of the two runs means anything.
add 1 enc c1 >/dev/null; add 2 enc c2 >/dev/null
C2=$(ip_of c2)
check bench_encrypted_path_up wait_for 60 ip netns exec c1 ping -c 1 -W 1 $C2
for round in 1 2 3; do
    start_transfer 50
    ip netns exec c1 ping -c 100 -i 0.1 -W 2 $C2 > /tmp/pings
    transfer_done
    grep -o 'time=[0-9.]*' /tmp/pings | cut -d= -f2 | sort -n > /tmp/rtts
    N=$(wc -l < /tmp/rtts)
    echo "BENCH rtt_avg_ms $SERIES $(awk '{ s += $1 } END { printf "%.2f", s / NR }' /tmp/rtts)"
    echo "BENCH rtt_p99_ms $SERIES $(sed -n "$(( (N * 99 + 99) / 100 ))p" /tmp/rtts)"
    echo "BENCH rtt_max_ms $SERIES $(tail -1 /tmp/rtts)"
    echo "BENCH lost $SERIES $((100 - N))"
    echo "BENCH bytes_short $SERIES $((50 * 16 * 1024 - GOT))"
done
echo "BENCH rekeys $SERIES $(grep -c 'early rekey' /tmp/h1/tetherd.log)"
kill $(cat /tmp/h1/tetherd.pid) $(cat /tmp/h2/tetherd.pid)
