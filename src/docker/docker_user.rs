//! Docker sets the FORWARD policy of `ip filter` to DROP, and a drop anywhere at the hook is final: an accept
//! in `inet tether` cannot undo it, so even two containers of one tether bridge could not talk. Docker's
//! answer for other software is the DOCKER-USER chain; as Docker's driver, tether adds the two device-group
//! rules `firewall::ForeignForwardDrop` recommends there (every tether bridge is in one group), once for all
//! tether networks, and removes them with the last one. iptables manages that chain (Docker's own rules are
//! iptables rules), so iptables, not tether's netlink encoder, writes there; it runs once per network, never
//! per container. tether's own drops (isolation, unpublished ingress) still hold: they are final too.

use std::process::{Command, Stdio};

use crate::link::TETHER_BRIDGE_GROUP;

const CHAIN: &str = "DOCKER-USER";
const TOOLS: [&str; 2] = ["iptables", "ip6tables"];

fn rules() -> [Vec<String>; 2] {
    let g = TETHER_BRIDGE_GROUP.to_string();
    let rule = |dir: &str| {
        ["-m", "devgroup", dir, &g, "-j", "ACCEPT"]
            .map(String::from)
            .to_vec()
    };
    [rule("--src-group"), rule("--dst-group")]
}

/// Runs `tool -w <args>`; whether it succeeded (a missing tool is a failure).
fn run(tool: &str, args: &[&str], rule: &[String]) -> bool {
    Command::new(tool)
        .arg("-w")
        .args(args)
        .args(rule)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn chain_exists(tool: &str) -> bool {
    run(tool, &["-S", CHAIN], &[])
}

/// Adds the rules where Docker made a DOCKER-USER chain (where it made none, there is no DROP to get past).
pub fn ensure() {
    for tool in TOOLS {
        if !chain_exists(tool) {
            continue;
        }
        for rule in rules() {
            if !run(tool, &["-C", CHAIN], &rule) && !run(tool, &["-I", CHAIN], &rule) {
                tracing::warn!(
                    tool,
                    rule = rule.join(" "),
                    "could not add tether's rule to DOCKER-USER: traffic of tether networks is dropped by Docker's FORWARD policy"
                );
            }
        }
    }
}

/// Removes the rules (every copy), after the last tether network is gone.
pub fn remove() {
    for tool in TOOLS {
        if !chain_exists(tool) {
            continue;
        }
        for rule in rules() {
            while run(tool, &["-C", CHAIN], &rule) {
                if !run(tool, &["-D", CHAIN], &rule) {
                    tracing::warn!(tool, "could not remove tether's rule from DOCKER-USER");
                    break;
                }
            }
        }
    }
}
