//! Encrypted overlay networks, proven in a qemu VM booting Debian's kernel (this machine's refuses ESP
//! algorithms): two simulated hosts, each with its own tetherd, pass traffic in ESP with no cleartext
//! VXLAN on the wire; cleartext VXLAN injected into the encrypted network is dropped (and the same
//! injection into a plain network arrives: the control); a deleted state cuts its pair instead of leaking;
//! three key rotations lose no ping and break no TCP transfer. The scenario is `vm_scenarios/overlay_esp.sh`
//! after `overlay_esp_hosts.sh`; `harness/vm/overlay_esp.rs` builds the VM. A second VM runs
//! `overlay_esp_rekey.sh` with three hosts over a 1450-byte underlay and a tiny soft lifetime: every pair
//! reaches the others; the container MTU leaves room
//! for VXLAN and ESP (a DF ping of it crosses, one byte more is refused, no fragment on the wire), and the
//! pairs rekey early many times under load, with no lost ping, no broken transfer and no sequence error.

#[path = "harness/vm/mod.rs"]
mod vm;

use std::time::Duration;

/// Boot 4-10 s, gossip convergence and three 8-second epochs of pings; room for a loaded machine.
const VM_TIMEOUT: Duration = Duration::from_secs(400);

/// Every RESULT vm_scenarios/overlay_esp.sh prints; a missing one fails the test, and so does one not listed.
const EXPECTED: &[&str] = &[
    "add_c1_on_h1",
    "block_policy_from_the_first_add",
    "input_guard_from_the_first_add",
    "add_c2_on_h2",
    "add_c3_plain_on_h2",
    "add_c4_plain_on_h1",
    "encrypted_c1_reaches_c2",
    "peer_states_are_esp_gcm_with_esn",
    "plain_c4_reaches_c3",
    "ten_pings_across",
    "underlay_carries_esp",
    "underlay_carries_no_cleartext_vxlan",
    "cleartext_injection_reaches_a_plain_network",
    "cleartext_injection_into_the_encrypted_network_is_dropped",
    "without_its_state_the_pair_is_cut",
    "nothing_leaked_in_clear_without_the_state",
    "the_kernel_counted_the_drops",
    "tetherd_restores_the_state",
    "without_its_policy_the_pair_is_blocked",
    "nothing_leaked_in_clear_without_the_policy",
    "tetherd_restores_the_policy",
    "rotation_changed_the_sending_spi",
    "tcp_transfer_across_three_rotations_delivers_every_byte",
    "no_ping_lost_across_three_rotations",
    "receive_states_for_three_epochs_and_two_generations_per_peer",
    "no_sequence_errors",
];

#[test]
fn encrypted_overlay_carries_only_esp_drops_cleartext_and_rotates_without_loss() {
    let console = vm::overlay_esp::run(
        "overlay_esp_vm",
        concat!(
            include_str!("vm_scenarios/overlay_esp_hosts.sh"),
            include_str!("vm_scenarios/overlay_esp.sh")
        ),
        VM_TIMEOUT,
    );
    vm::results::assert_all_passed(&console, EXPECTED);
}

/// A soft lifetime of this many packets per state.
const SOFT_PACKETS: u32 = 50;
/// The underlay's MTU in the rekey VM (the container MTU comes from it).
const UNDERLAY_MTU: u32 = 1450;

/// Every RESULT vm_scenarios/overlay_esp_rekey.sh prints.
const REKEY_EXPECTED: &[&str] = &[
    "add_c1_on_h1",
    "add_c2_on_h2",
    "add_c3_on_h3",
    "encrypted_c1_reaches_c2",
    "encrypted_c3_reaches_c1",
    "encrypted_c3_reaches_c2",
    "container_mtu_is_the_underlays_minus_vxlan_and_esp",
    "df_ping_of_the_full_mtu_crosses",
    "df_ping_one_byte_over_is_refused",
    "soft_lifetime_on_the_states",
    "tcp_transfer_across_early_rekeys_delivers_every_byte",
    "no_ping_lost_across_early_rekeys",
    "no_ping_lost_from_the_third_host",
    "early_rekey_changed_the_sending_key",
    "h1_rekeyed_past_the_spi_slots",
    "h2_rekeyed_past_the_spi_slots",
    "h1_holds_nine_states_from_h2",
    "h1_holds_nine_states_from_h3",
    "rekeyed_traffic_stays_esp",
    "full_size_segments_cross_unfragmented",
    "h1_no_sequence_errors",
    "h2_no_sequence_errors",
    "h3_no_sequence_errors",
];

#[test]
fn three_hosts_rekey_pairs_early_without_loss_over_a_1450_byte_underlay() {
    let prelude = format!(
        "HOSTS=3\nROTATION=3600\nUNDERLAY_MTU={UNDERLAY_MTU}\nSOFT={SOFT_PACKETS}\nESP_EXTRA=', \"softLimitPackets\": {SOFT_PACKETS}'\n"
    );
    let scenario = prelude
        + include_str!("vm_scenarios/overlay_esp_hosts.sh")
        + include_str!("vm_scenarios/overlay_esp_rekey.sh");
    let console = vm::overlay_esp::run("overlay_esp_rekey_vm", &scenario, VM_TIMEOUT);
    vm::results::assert_all_passed(&console, REKEY_EXPECTED);
}
