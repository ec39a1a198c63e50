//! What the VIP tables (`service_balance`) and the mesh table (`mesh_ports`) share: a balancing chain per
//! kind and backend count, made once per table, and a dispatch element that jumps to it, replaced whole.

use std::collections::HashSet;
use std::hash::Hash;

use super::netlink::requests::{ElementData, ElementOp, SetElement};
use super::netlink::ruleset::{Change, Expr};

/// A chain that picks one of `count` slots; its name says what it is, so one chain serves every key with
/// the same kind and count.
pub trait BalancingChain: Copy + Eq + Hash {
    fn name(self) -> String;
    fn rule(self) -> Vec<Expr>;
}

/// The chain a dispatch element jumps to: `empty` (the refusing chain) without backends, else `chain`,
/// whose chain and rule are added the first time this table's `made` sees it.
pub fn jump_target<C: BalancingChain>(
    chain: Option<C>,
    empty: &str,
    made: &mut HashSet<C>,
    changes: &mut Vec<Change>,
) -> String {
    let Some(chain) = chain else {
        return empty.to_string();
    };
    if made.insert(chain) {
        changes.push(Change::AddChain {
            name: chain.name(),
            comment: None,
        });
        changes.push(Change::AddRule {
            chain: chain.name(),
            exprs: chain.rule(),
        });
    }
    chain.name()
}

/// `dispatch` made to jump to `target`. An element's data cannot be changed in place, so one that is
/// `known` is deleted and added again in the same transaction. `element` makes the change for the
/// caller's map (its name, family and counters).
pub fn set_dispatch(
    dispatch: SetElement,
    target: String,
    known: bool,
    element: impl Fn(ElementOp, SetElement) -> Change,
    changes: &mut Vec<Change>,
) {
    if known {
        changes.push(element(ElementOp::Delete, dispatch.clone()));
    }
    changes.push(element(
        ElementOp::Add,
        SetElement {
            data: Some(ElementData::Jump(target)),
            ..dispatch
        },
    ));
}
