#!/bin/sh
# PID 1 of the test VM: mounts, loads the modules the test asked for, runs /scenario.sh (which prints
# "RESULT <name> PASS|FAIL <detail>" lines), then powers off. A kernel panic also ends the VM (panic=-1,
# -no-reboot), so qemu never outlives a dead init.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin:/opt/cni/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
uptime_s() { cut -d' ' -f1 /proc/uptime; }
echo "=== INIT START uptime=$(uptime_s) kernel=$(uname -r)"

# Debian's busybox-static prefers its own applets: ash would run busybox's "ip" (no vlan, no netns
# details) even with /sbin/ip present, so every "ip" in the scenario goes to iproute2 by full path.
ip() { /sbin/ip "$@"; }

# Loaded up front, dependencies first, rather than left to autoloading: a missing module then shows up
# here by name instead of as a vague "operation not supported" later.
# busybox's insmod can return 0 when the kernel refused the module, so /proc/modules has the last word.
for m in $(cat /etc/tether-vm/modules); do
    insmod "/lib/modules/$(uname -r)/$m"
    name=$(basename "$m" .ko | tr - _)
    grep -q "^$name " /proc/modules || echo "RESULT modules FAIL $m is not loaded (see the kernel's message above)"
done
ip link set lo up

# check NAME CMD...: PASS when CMD succeeds; the detail is the tail of its output either way.
check() {
    name=$1; shift
    if out=$("$@" 2>&1); then
        echo "RESULT $name PASS $(echo "$out" | tail -1)"
    else
        echo "--- $name: $*"; echo "$out" | tail -20
        echo "RESULT $name FAIL $(echo "$out" | tail -2 | tr '\n' ' ')"
    fi
}
# check_fails NAME CMD...: PASS when CMD fails (what must not work: traffic across VLANs).
check_fails() {
    name=$1; shift
    if out=$("$@" 2>&1); then
        echo "--- $name: $*"; echo "$out" | tail -20
        echo "RESULT $name FAIL succeeded but must not: $(echo "$out" | tail -2 | tr '\n' ' ')"
    else
        echo "RESULT $name PASS failed as it must: $(echo "$out" | tail -1)"
    fi
}

. /scenario.sh

echo "=== INIT END uptime=$(uptime_s)"
sync
poweroff -f
