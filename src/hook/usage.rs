//! The hook's usage text, on its own so that the arguments parser and the error type (which prints it) both
//! point down to it instead of at each other.

pub const USAGE: &str = "\
Usage: tether hook [attach|detach] [--network NET]... [-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]]...
                   [--ip IP]... [--mac MAC] [--alias NAME]... [--name NAME]

An OCI runtime hook: reads the container's OCI state on stdin. Without attach|detach the stage comes from
the state's status (creating/created: attach, stopped: detach). Install it as a createRuntime and a
poststop hook. Networks, ports, addresses, aliases and the name come from these flags, else from the
container's annotations tether.network, tether.ports, tether.ip, tether.mac, tether.aliases, tether.name.
No network: loopback only; `--network host`: nothing is done.";
