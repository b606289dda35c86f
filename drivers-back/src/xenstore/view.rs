//! The store as one operation sees it: the committed tree, or the tree through a
//! transaction's copies. Every node access of an operation goes through here, so that
//! transactions record what they touched (C's `access_node`).

use super::node::Node;
use super::path;
use super::perms::Perm;
use super::transaction::Transaction;
use super::tree::Tree;
use super::watch::Change;
use alloc::vec::Vec;
use pv_core::xs_wire::XsError;

pub(crate) struct View<'a> {
    tree: &'a mut Tree,
    tx: Option<&'a mut Transaction>,
    /// Cap on the nodes a transaction touches (None: unlimited).
    tx_limit: Option<u32>,
    /// Watch events of changes made outside a transaction.
    changes: Vec<Change>,
}

impl<'a> View<'a> {
    pub fn new(
        tree: &'a mut Tree,
        tx: Option<&'a mut Transaction>,
        tx_limit: Option<u32>,
    ) -> View<'a> {
        View {
            tree,
            tx,
            tx_limit,
            changes: Vec::new(),
        }
    }

    /// A copy of the node at `path`, if it exists.
    pub fn get(&mut self, path: &str) -> Result<Option<Node>, XsError> {
        match self.tx.as_deref_mut() {
            None => Ok(self.tree.get(path).cloned()),
            Some(tx) => {
                if let Some(node) = tx.modified(path) {
                    return Ok(node.cloned());
                }
                let committed = self.tree.get(path);
                tx.record(path, committed, self.tx_limit)?;
                Ok(committed.cloned())
            }
        }
    }

    /// Stores `node` at `path` (the caller keeps child lists consistent).
    pub fn put(&mut self, path: &str, mut node: Node) -> Result<(), XsError> {
        if self.tx.is_none() {
            self.tree.put(path, node);
            return Ok(());
        }
        self.get(path)?;
        node.generation = self.tree.next_generation();
        if let Some(tx) = self.tx.as_deref_mut() {
            tx.set(path, Some(node));
        }
        Ok(())
    }

    /// Removes the node at `path` alone.
    pub fn delete(&mut self, path: &str) -> Result<(), XsError> {
        if self.tx.is_none() {
            self.tree.remove(path);
            return Ok(());
        }
        self.get(path)?;
        if let Some(tx) = self.tx.as_deref_mut() {
            tx.set(path, None);
        }
        Ok(())
    }

    /// Nodes `domid` owns as this view sees them.
    pub fn owned_by(&self, domid: u16) -> i64 {
        let committed = i64::from(self.tree.owned_by(domid));
        committed + self.tx.as_deref().map_or(0, |tx| tx.owned_delta(domid))
    }

    /// Reports a change of `path` to watchers: now, or at commit in a transaction.
    /// `perms` are the node's permissions (before its removal, for a removed node).
    pub fn fire(&mut self, path: &str, exact: bool, perms: &[Perm], old_perms: Option<Vec<Perm>>) {
        match self.tx.as_deref_mut() {
            Some(tx) => tx.fire(path, exact),
            None => {
                let parent_perms = self.tree.get(path::parent(path)).map(|n| n.perms.clone());
                self.changes.push(Change {
                    path: path.into(),
                    exact,
                    perms: Some(perms.to_vec()),
                    parent_perms,
                    old_perms,
                });
            }
        }
    }

    pub fn into_changes(self) -> Vec<Change> {
        self.changes
    }
}
