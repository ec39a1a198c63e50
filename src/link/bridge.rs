//! Linux bridges and their ports.

use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{LinkBridge, LinkBridgePort, LinkUnspec};

use super::{check_ifname, index_object, LinkError, LinkInfo, MacAddr, Netlink};

/// The network device group (`ip link set DEV group N`) of every bridge tether creates. A host whose
/// other firewall drops forwarded traffic by default lets all tether networks through with one rule on it
/// (`meta iifgroup`/`oifgroup`, iptables `-m devgroup`), present and future, whatever the bridges' names.
pub const TETHER_BRIDGE_GROUP: u32 = 7447;

impl Netlink {
    /// Makes sure bridge `name` exists, carries `mac`, has `mtu` (when given) and is up; returns it.
    ///
    /// Safe to call from several processes at once: a creator that loses the race gets EEXIST,
    /// re-reads the link and continues with the winner's bridge.
    ///
    /// Why pin the MAC: a bridge without an explicitly set address takes the lowest MAC of its
    /// ports and changes it whenever ports come and go, which breaks the containers' ARP entries
    /// for the gateway. Setting IFLA_ADDRESS marks it NET_ADDR_SET and the bridge keeps it.
    pub fn ensure_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        mac: MacAddr,
    ) -> Result<LinkInfo, LinkError> {
        self.ensure_bridge_noting_creation(name, mtu, mac)
            .map(|(link, _)| link)
    }

    /// [`Netlink::ensure_bridge`], also telling whether this call created the bridge (true) or found it,
    /// so a caller that undoes its work removes only a bridge it made, without looking the bridge up twice.
    pub fn ensure_bridge_noting_creation(
        &self,
        name: &str,
        mtu: Option<u32>,
        mac: MacAddr,
    ) -> Result<(LinkInfo, bool), LinkError> {
        check_ifname(name)?;
        let existing = match self.link_by_name(name)? {
            Some(link) => link,
            None => match self.create_bridge(name, mtu, mac) {
                Ok(created) => return Ok((created, true)),
                Err(LinkError::Exists { .. }) => {
                    tracing::debug!(bridge = name, "bridge created concurrently; using it");
                    self.link_by_name(name)?
                        .ok_or_else(|| LinkError::NotFound {
                            op: "reading bridge",
                            object: name.to_string(),
                        })?
                }
                Err(e) => return Err(e),
            },
        };
        if !existing.is_bridge() {
            return Err(LinkError::NotABridge {
                name: name.to_string(),
                kind: existing
                    .kind
                    .clone()
                    .unwrap_or_else(|| "device without a kind (physical or loopback)".into()),
            });
        }
        Ok((self.converge_bridge(existing, mtu, mac)?, false))
    }

    fn create_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        mac: MacAddr,
    ) -> Result<LinkInfo, LinkError> {
        // One RTM_NEWLINK carries the address, MTU and IFF_UP together.
        //
        // Multicast snooping off: with it on, every port that joins or leaves re-arms the IGMP and MLD query
        // timers of every other port (br_port_state_selection -> br_multicast_enable_port), which fire at
        // once: work linear in the port count on each ADD and DEL (~2 ms per pair at 1000 ports). It buys
        // nothing on a container bridge: without a querier on the segment (the bridge's own is off, as in
        // Docker) the kernel floods multicast to every port anyway. Set only at creation, so an operator who
        // runs a querier can turn it back on with `ip link set BRIDGE type bridge mcast_snooping 1`.
        //
        // Device group TETHER_BRIDGE_GROUP: one rule in another table's forward chain recognises every
        // bridge tether makes, whatever its name (see firewall::forward_policy).
        let mut builder = LinkBridge::new(name)
            .address(mac.octets().to_vec())
            .mcast_snooping(false)
            .append_extra_attribute(LinkAttribute::Group(TETHER_BRIDGE_GROUP));
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        self.create_link("creating bridge", name, builder.build())?;
        tracing::debug!(bridge = name, %mac, "created bridge");
        self.link_by_name(name)?.ok_or_else(|| LinkError::NotFound {
            op: "reading created bridge",
            object: name.to_string(),
        })
    }

    /// Brings an existing bridge to the wanted address, MTU and state in at most one request.
    fn converge_bridge(
        &self,
        mut link: LinkInfo,
        mtu: Option<u32>,
        mac: MacAddr,
    ) -> Result<LinkInfo, LinkError> {
        let wrong_mac = link.mac != Some(mac);
        let wrong_mtu = mtu.is_some_and(|m| m != link.mtu);
        if !wrong_mac && !wrong_mtu && link.up {
            return Ok(link);
        }
        let mut builder = LinkUnspec::new_with_index(link.index).up();
        if wrong_mac {
            builder = builder.address(mac.octets().to_vec());
        }
        if let (true, Some(mtu)) = (wrong_mtu, mtu) {
            builder = builder.mtu(mtu);
        }
        self.change_link("updating bridge", link.name.clone(), builder.build())?;
        link.mac = Some(mac);
        if let Some(mtu) = mtu {
            link.mtu = mtu;
        }
        link.up = true;
        Ok(link)
    }

    /// Lets frames leave a bridge port on the port they came in by (IFLA_BRPORT_MODE), so a
    /// container can reach itself through a DNAT'ed published port.
    ///
    /// Sent as bridge port data (IFLA_INFO_SLAVE_DATA) over netlink instead of writing
    /// /sys/class/net/X/brport/hairpin_mode: sysfs shows the network namespace of whoever mounted
    /// it, not of the calling thread, so it can silently name another namespace's device.
    pub fn set_hairpin(&self, index: u32, on: bool) -> Result<(), LinkError> {
        let message = LinkBridgePort::new(index).hairpin(on).build();
        self.change_link("setting hairpin mode of", index_object(index), message)
    }

    /// Turns MAC learning of a bridge port on or off.
    pub fn set_learning(&self, index: u32, on: bool) -> Result<(), LinkError> {
        let message = LinkBridgePort::new(index).learning(on).build();
        self.change_link("setting learning of", index_object(index), message)
    }

    /// Isolates a bridge port: isolated ports cannot talk to each other, only to non-isolated ones.
    pub fn set_isolated(&self, index: u32, on: bool) -> Result<(), LinkError> {
        let message = LinkBridgePort::new(index).isolated(on).build();
        self.change_link("setting isolation of", index_object(index), message)
    }
}
