//! Policy routing by firewall mark (IPv4): `ip rule add fwmark M lookup T pref P` and a table's one
//! default route (`ip route replace default via GW table T`). The routing mesh sends the replies of a
//! connection another host forwarded here (client address kept) back through that host this way.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use super::{LinkError, Netlink};

/// One `fwmark MARK lookup TABLE` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkRule {
    pub mark: u32,
    pub table: u32,
}

impl Netlink {
    /// The IPv4 fwmark rules at priority `pref`.
    pub fn mark_rules(&self, pref: u32) -> Result<Vec<MarkRule>, LinkError> {
        let request = self.handle().rule().get(IpVersion::V4).execute();
        let messages: Vec<RuleMessage> = self
            .block_on(request.try_collect())
            .map_err(LinkError::from_rtnetlink("listing rules", "in namespace"))?;
        Ok(messages
            .iter()
            .filter(|m| m.attributes.contains(&RuleAttribute::Priority(pref)))
            .filter_map(|m| {
                let mut mark = None;
                let mut table = u32::from(m.header.table);
                for a in &m.attributes {
                    match a {
                        RuleAttribute::FwMark(v) => mark = Some(*v),
                        RuleAttribute::Table(t) => table = *t,
                        _ => {}
                    }
                }
                Some(MarkRule { mark: mark?, table })
            })
            .collect())
    }

    /// Adds `fwmark rule.mark lookup rule.table pref pref`; one already there gives
    /// [`LinkError::Exists`].
    pub fn add_mark_rule(&self, rule: MarkRule, pref: u32) -> Result<(), LinkError> {
        let request = self
            .handle()
            .rule()
            .add()
            .v4()
            .fw_mark(rule.mark)
            .table_id(rule.table)
            .priority(pref)
            .action(RuleAction::ToTable);
        self.block_on(request.execute())
            .map_err(LinkError::from_rtnetlink("adding rule", rule_object(rule)))
    }

    /// Deletes that rule; `Ok(false)` when there is none.
    pub fn del_mark_rule(&self, rule: MarkRule, pref: u32) -> Result<bool, LinkError> {
        let mut message = RuleMessage::default();
        message.header.family = rtnetlink::packet_route::AddressFamily::Inet;
        message.header.action = RuleAction::ToTable;
        message.attributes = vec![
            RuleAttribute::FwMark(rule.mark),
            RuleAttribute::Table(rule.table),
            RuleAttribute::Priority(pref),
        ];
        match self
            .block_on(self.handle().rule().del(message).execute())
            .map_err(LinkError::from_rtnetlink(
                "deleting rule",
                rule_object(rule),
            )) {
            Ok(()) => Ok(true),
            Err(LinkError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes `table`'s default route go through `gw` (on a connected link), replacing what was there.
    pub fn set_table_default(&self, table: u32, gw: Ipv4Addr) -> Result<(), LinkError> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .gateway(gw)
            .build();
        self.block_on(self.handle().route().add(message).replace().execute())
            .map_err(LinkError::from_rtnetlink(
                "setting route",
                format!("default via {gw} table {table}"),
            ))
    }

    /// Deletes `table`'s default route; `Ok(false)` when there is none.
    pub fn del_table_default(&self, table: u32) -> Result<bool, LinkError> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .build();
        match self
            .block_on(self.handle().route().del(message).execute())
            .map_err(LinkError::from_rtnetlink(
                "deleting route",
                format!("default table {table}"),
            )) {
            Ok(()) => Ok(true),
            Err(LinkError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn rule_object(rule: MarkRule) -> String {
    format!("fwmark {:#x} lookup {}", rule.mark, rule.table)
}
