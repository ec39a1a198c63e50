#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time: `fuzz/run.sh TARGET SECONDS` or
# `fuzz/run.sh all SECONDS` (every target, one after the other). Exits non-zero on the first crash
# (libFuzzer leaves the input in fuzz/artifacts/TARGET/; replay it with `fuzz/target/.../TARGET FILE`).
#
# Runs on the stable toolchain: coverage comes from LLVM's sanitizer-coverage passes, which stable rustc
# takes as codegen flags, and libFuzzer is built from source by the libfuzzer-sys crate (needs a C++
# compiler). No AddressSanitizer (it needs nightly's -Zsanitizer); the targets are safe Rust, built with
# overflow checks and debug assertions, so a panic is the crash. `cargo fuzz run TARGET` (cargo-fuzz on
# a nightly toolchain) uses the same targets and adds ASan.
#
# Seed corpora come from testdata/ (CNI configs and results) and from inputs this script writes (DNS
# queries and replies, netlink messages); what the fuzzer finds is kept in fuzz/corpus/TARGET/.
set -euo pipefail

cd "$(dirname "$0")"
target="${1:-all}"
seconds="${2:-30}"
all_targets=(dns_query dns_cache dns_forward dns_index cni_config oci_state overlay_records nfnetlink_replies)

export RUSTFLAGS="${RUSTFLAGS:-} --cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
# Its own target dir: the instrumented build must never mix with the main one's artifacts.
export CARGO_TARGET_DIR="$PWD/target"
triple="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps RUSTFLAGS off build scripts and proc macros (they run on the host, uninstrumented).
cargo build --release --locked --target "$triple" --bins
bin_dir="$CARGO_TARGET_DIR/$triple/release"

seed() {
    local t="$1" dir="corpus/$1"
    mkdir -p "$dir" "artifacts/$t"
    case "$t" in
        cni_config | oci_state)
            cp ../testdata/cni/* "$dir/" 2>/dev/null || true
            cp ../testdata/bad/*.json "$dir/" 2>/dev/null || true
            cp ../testdata/ipam/good/* ../testdata/ipam/bad/* "$dir/" 2>/dev/null || true
            if [ "$t" = oci_state ]; then
                printf '%s' '{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"tether.network":"net1","tether.aliases":"web,www","tether.name":"c1","tether.ports":"8080:80/tcp","tether.ip":"10.88.0.9","tether.mac":"02:42:ac:11:00:09"}}' >"$dir/state.json"
            fi
            ;;
        dns_forward)
            # web.example's reply: one A record (the target copies the query's ID in).
            printf '\x00\x00\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03web\x07example\x00\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01' >"$dir/a-reply"
            ;;
        dns_query | dns_cache)
            # A query for web (A), with EDNS; and web's reply behind it for the cache target.
            printf '\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x03web\x00\x00\x01\x00\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00' >"$dir/web-a"
            printf '\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01\x33\x01\x30\x01\x30\x0210\x07in-addr\x04arpa\x00\x00\x0c\x00\x01' >"$dir/ptr"
            printf '\x11\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01' >"$dir/query-and-reply"
            ;;
        dns_index)
            printf '\x00\x00\x01\x02\x00\x00\x00\x02\x01\x01\x01\x20\x01\x00\x00\x00\x00\x40' >"$dir/join-join-leave"
            ;;
        overlay_records)
            printf '\x01\x00\x00' >"$dir/empty-records"
            ;;
        nfnetlink_replies)
            # One NLMSG_ERROR carrying -EEXIST, then an ack.
            printf '\x24\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xef\xff\xff\xff\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' >"$dir/error"
            ;;
    esac
}

run() {
    local t="$1"
    seed "$t"
    echo "=== fuzz $t for ${seconds}s"
    "$bin_dir/$t" "corpus/$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>"artifacts/$t.log" || {
        tail -n 40 "artifacts/$t.log"
        echo "fuzz/run.sh: $t crashed; the input is in fuzz/artifacts/$t/" >&2
        return 1
    }
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "artifacts/$t.log" | sed "s/^/$t /"
}

if [ "$target" = all ]; then
    for t in "${all_targets[@]}"; do
        run "$t"
    done
else
    run "$target"
fi
