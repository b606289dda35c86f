//! Watches and watch events (`xenstored_watch.c`, Xen 4.17).
//!
//! A watch on a path fires for changes to the path and everything below it (a removed
//! subtree fires once for its root on ancestor watches and once per node for watches on
//! exactly that node). An event reaches a watcher only if it may read the node, or its
//! parent, or could read the node before the change (so a watcher learns it lost
//! access). Special names (`@introduceDomain`, `@releaseDomain`) fire to watchers
//! allowed to read them by their own permission lists. Relative watches get relative
//! paths in their events.

use super::path;
use super::perms::{rights, Caller, Perm};
use alloc::string::String;
use alloc::vec::Vec;

/// One registered watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watch {
    /// Absolute path, or a special `@` name.
    pub path: String,
    pub token: Vec<u8>,
    /// Registered with a relative path: events name paths relative to the home.
    pub relative: bool,
}

impl Watch {
    /// True if a change of `changed` fires this watch.
    pub fn fires_for(&self, changed: &str, exact: bool) -> bool {
        if exact {
            self.path == changed
        } else {
            path::is_child(changed, &self.path)
        }
    }

    /// The `XS_WATCH_EVENT` payload for a change of `changed`, seen by domain `domid`.
    pub fn event(&self, changed: &str, domid: u16) -> Vec<u8> {
        let mut shown = changed;
        if self.relative {
            let home = path::domain_path(domid);
            if let Some(rest) = changed.strip_prefix(home.as_str()) {
                shown = rest.strip_prefix('/').unwrap_or(rest);
            }
        }
        let mut out = Vec::with_capacity(shown.len() + self.token.len() + 2);
        out.extend_from_slice(shown.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.token);
        out.push(0);
        out
    }
}

/// A change to report to watchers, with the permissions needed to decide who may see
/// it, captured when the change happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub path: String,
    /// Fire only watches on exactly this path (nodes below a removed subtree's root).
    pub exact: bool,
    /// The node's permissions (None if it no longer exists).
    pub perms: Option<Vec<Perm>>,
    /// Its parent's permissions, when the node exists.
    pub parent_perms: Option<Vec<Perm>>,
    /// Its permissions before the change, if they changed or it was removed.
    pub old_perms: Option<Vec<Perm>>,
}

impl Change {
    /// C's `watch_permitted`.
    pub fn visible_to(&self, caller: Caller) -> bool {
        let readable = |p: &Option<Vec<Perm>>| p.as_deref().is_some_and(|p| rights(caller, p).read);
        if readable(&self.old_perms) {
            return true;
        }
        if self.perms.is_none() {
            return false;
        }
        readable(&self.perms) || readable(&self.parent_perms)
    }
}
