//! Transactions (`xenstored_transaction.c`, Xen 4.17).
//!
//! A transaction records the committed generation of every node it touches (or that the
//! node did not exist) when it first touches it, and keeps its own versions of the nodes
//! it writes or removes; its reads see those versions, other nodes as committed. At
//! commit, if any touched node's committed generation differs from the one recorded
//! (someone else changed, created or removed it meanwhile), the commit fails with EAGAIN
//! and the client retries; otherwise the transaction's versions replace the committed
//! nodes at once. Watch events of a transaction fire at commit only.

use super::node::Node;
use super::path;
use super::perms::{Caller, Perm};
use super::quota::Limits;
use super::tree::Tree;
use super::watch::Change;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use pv_core::xs_wire::XsError;

#[derive(Debug, Clone)]
struct Accessed {
    /// Committed generation at first access; None if the node did not exist.
    first_generation: Option<u64>,
    /// Owner and permissions at first access.
    first_owner: Option<u16>,
    first_perms: Option<Vec<Perm>>,
    /// The transaction's version of a node it modified; None = absent. Nodes only read
    /// are not copied (a domain could otherwise pin `transaction_nodes` copies per
    /// transaction in dom0): reads see the committed node, and if that changed since the
    /// first access the commit fails anyway.
    node: Option<Node>,
    modified: bool,
    /// A watch event is due at commit; `Some(true)` = exact.
    fire: Option<bool>,
}

#[derive(Debug, Default)]
pub(crate) struct Transaction {
    /// Touched paths in order of first access (events fire in that order).
    order: Vec<String>,
    accessed: BTreeMap<String, Accessed>,
    /// An operation failed half-way (too many nodes touched): commit must fail.
    failed: bool,
    created: bool,
}

impl Transaction {
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// The transaction's version of `path`, if it modified it.
    pub fn modified(&self, path: &str) -> Option<Option<&Node>> {
        self.accessed
            .get(path)
            .filter(|a| a.modified)
            .map(|a| a.node.as_ref())
    }

    /// Records the first access to `path`, whose committed version is `committed`.
    /// `limit` caps the number of distinct nodes (None: unlimited).
    pub fn record(
        &mut self,
        path: &str,
        committed: Option<&Node>,
        limit: Option<u32>,
    ) -> Result<(), XsError> {
        if self.accessed.contains_key(path) {
            return Ok(());
        }
        if limit.is_some_and(|l| self.order.len() >= l as usize) {
            self.failed = true;
            return Err(XsError::ENOSPC);
        }
        self.order.push(path.to_string());
        self.accessed.insert(
            path.to_string(),
            Accessed {
                first_generation: committed.map(|n| n.generation),
                first_owner: committed.map(Node::owner),
                first_perms: committed.map(|n| n.perms.clone()),
                node: None,
                modified: false,
                fire: None,
            },
        );
        Ok(())
    }

    /// Replaces the transaction's version of a recorded node (None removes it).
    pub fn set(&mut self, path: &str, node: Option<Node>) {
        match self.accessed.get_mut(path) {
            Some(a) => {
                if node.is_some() && a.first_generation.is_none() {
                    self.created = true;
                }
                a.node = node;
                a.modified = true;
            }
            // Callers record before they set; a miss would be a bug here, and failing
            // the transaction is the safe answer.
            None => self.failed = true,
        }
    }

    /// Queues a watch event for commit; a subtree event replaces an exact one.
    pub fn fire(&mut self, path: &str, exact: bool) {
        match self.accessed.get_mut(path) {
            Some(a) => a.fire = Some(a.fire.map_or(exact, |e| e && exact)),
            None => self.failed = true,
        }
    }

    /// Change in the number of nodes `domid` owns if this transaction commits.
    pub fn owned_delta(&self, domid: u16) -> i64 {
        let mut delta = 0;
        for a in self.accessed.values().filter(|a| a.modified) {
            delta -= i64::from(a.first_owner == Some(domid));
            delta += i64::from(a.node.as_ref().is_some_and(|n| n.owner() == domid));
        }
        delta
    }

    /// Commits into `tree`, returning the watch events to fire.
    pub fn commit(
        self,
        tree: &mut Tree,
        caller: Caller,
        limits: &Limits,
    ) -> Result<Vec<Change>, XsError> {
        if self.failed {
            // C reports a transaction broken by an earlier failure as ENOMEM.
            return Err(XsError::ENOMEM);
        }
        for (path, a) in &self.accessed {
            if tree.get(path).map(|n| n.generation) != a.first_generation {
                return Err(XsError::EAGAIN);
            }
        }
        if !caller.privileged() && self.created {
            let owned = i64::from(tree.owned_by(caller.domid)) + self.owned_delta(caller.domid);
            if owned > i64::from(limits.nodes) {
                return Err(XsError::ENOSPC);
            }
        }
        let Transaction {
            order,
            mut accessed,
            ..
        } = self;
        for path in &order {
            let Some(a) = accessed.get_mut(path) else {
                continue;
            };
            if !a.modified {
                continue;
            }
            match a.node.take() {
                Some(node) => tree.put(path, node),
                None => {
                    tree.remove(path);
                }
            }
        }
        let mut changes = Vec::new();
        for path in order {
            let Some(a) = accessed.remove(&path) else {
                continue;
            };
            let Some(exact) = a.fire else { continue };
            let perms = tree.get(&path).map(|n| n.perms.clone());
            let parent_perms = perms
                .as_ref()
                .and_then(|_| tree.get(path::parent(&path)))
                .map(|n| n.perms.clone());
            changes.push(Change {
                path,
                exact,
                perms,
                parent_perms,
                old_perms: a.first_perms,
            });
        }
        Ok(changes)
    }
}
