//! Policy routing by firewall mark (IPv4): `ip rule add fwmark M lookup T pref P` and a table's one
//! default route (`ip route replace default via GW table T`). The routing mesh sends the replies of a
//! connection another host forwarded here (client address kept) back through that host this way.

use std::net::Ipv4Addr;

use netlink_packet_core::NLM_F_REPLACE;
use rtnetlink::packet_route::route::RouteHeader;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::RouteMessageBuilder;

use super::{deleted, LinkError, Netlink, CREATE, EXISTING};

/// One `fwmark MARK lookup TABLE` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkRule {
    pub mark: u32,
    pub table: u32,
}

impl Netlink {
    /// The IPv4 fwmark rules at priority `pref`.
    pub fn mark_rules(&self, pref: u32) -> Result<Vec<MarkRule>, LinkError> {
        let mut filter = RuleMessage::default();
        filter.header.family = AddressFamily::Inet;
        filter.header.table = RouteHeader::RT_TABLE_UNSPEC;
        let answers = self.dump(
            RouteNetlinkMessage::GetRule(filter),
            "listing rules",
            "in namespace",
        )?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(rule) => Some(rule),
                _ => None,
            })
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
        self.request(
            RouteNetlinkMessage::NewRule(mark_rule_message(rule, pref)),
            CREATE,
            "adding rule",
            rule_object(rule),
        )
        .map(drop)
    }

    /// Deletes that rule; `Ok(false)` when there is none.
    pub fn del_mark_rule(&self, rule: MarkRule, pref: u32) -> Result<bool, LinkError> {
        deleted(self.request(
            RouteNetlinkMessage::DelRule(mark_rule_message(rule, pref)),
            EXISTING,
            "deleting rule",
            rule_object(rule),
        ))
    }

    /// Makes `table`'s default route go through `gw` (on a connected link), replacing what was there.
    pub fn set_table_default(&self, table: u32, gw: Ipv4Addr) -> Result<(), LinkError> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .gateway(gw)
            .build();
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            netlink_packet_core::NLM_F_CREATE | NLM_F_REPLACE,
            "setting route",
            format!("default via {gw} table {table}"),
        )
        .map(drop)
    }

    /// Deletes `table`'s default route; `Ok(false)` when there is none.
    pub fn del_table_default(&self, table: u32) -> Result<bool, LinkError> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .build();
        deleted(self.request(
            RouteNetlinkMessage::DelRoute(message),
            EXISTING,
            "deleting route",
            format!("default table {table}"),
        ))
    }
}

fn rule_object(rule: MarkRule) -> String {
    format!("fwmark {:#x} lookup {}", rule.mark, rule.table)
}

/// `fwmark MARK lookup TABLE pref PREF`, as both an add and a delete send it (the table as FRA_TABLE,
/// which holds ids over 255 too).
fn mark_rule_message(rule: MarkRule, pref: u32) -> RuleMessage {
    let mut message = RuleMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.action = RuleAction::ToTable;
    message.attributes = vec![
        RuleAttribute::FwMark(rule.mark),
        RuleAttribute::Table(rule.table),
        RuleAttribute::Priority(pref),
    ];
    message
}
