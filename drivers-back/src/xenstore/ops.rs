//! The node operations with their permission and quota rules (`do_read`, `do_write`,
//! `do_mkdir`, `do_rm`, `send_directory`, `send_directory_part`, `do_get_perms`,
//! `do_set_perms`, `get_node`, `construct_node` and `create_node` in C
//! `xenstored_core.c`, Xen 4.17). Shared by the wire protocol and dom0's in-process
//! calls; paths are already canonical here.

use super::node::Node;
use super::path;
use super::perms::{rights, Caller, Perm, Rights, READ, WRITE, WRITE_OWNER};
use super::quota::Limits;
use super::view::View;
use super::watch::Change;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use pv_core::xs_wire::{XsError, PAYLOAD_MAX};

pub(crate) struct Ops<'a> {
    view: View<'a>,
    caller: Caller,
    limits: &'a Limits,
}

impl<'a> Ops<'a> {
    pub fn new(view: View<'a>, caller: Caller, limits: &'a Limits) -> Ops<'a> {
        Ops {
            view,
            caller,
            limits,
        }
    }

    pub fn into_changes(self) -> Vec<Change> {
        self.view.into_changes()
    }

    /// The node at `path` if the caller has all of `need` on it. A missing node is
    /// ENOENT only if the closest existing ancestor grants some of `need`, EACCES
    /// otherwise: a domain learns nothing about nodes it could not see (C's
    /// `errno_from_parents`).
    fn get_node(&mut self, path: &str, need: Rights) -> Result<Node, XsError> {
        if let Some(node) = self.view.get(path)? {
            return if rights(self.caller, &node.perms).covers(need) {
                Ok(node)
            } else {
                Err(XsError::EACCES)
            };
        }
        let mut ancestor = path;
        loop {
            ancestor = path::parent(ancestor);
            if let Some(node) = self.view.get(ancestor)? {
                return if rights(self.caller, &node.perms).any_of(need) {
                    Err(XsError::ENOENT)
                } else {
                    Err(XsError::EACCES)
                };
            }
            if ancestor == "/" {
                return Err(XsError::EIO);
            }
        }
    }

    /// Applies the node-size quota to a node about to be written.
    fn check_size(&self, node: &Node) -> Result<(), XsError> {
        if !self.caller.privileged() && node.record_size() >= self.limits.node_size as usize {
            return Err(XsError::ENOSPC);
        }
        Ok(())
    }

    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, XsError> {
        Ok(self.get_node(path, READ)?.value)
    }

    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, XsError> {
        Ok(self.get_node(path, READ)?.children)
    }

    /// `XS_DIRECTORY_PART`: the node's generation, then as many child names from byte
    /// `offset` of the child list as fit in one message; a final empty string marks
    /// the end of the list.
    pub fn directory_part(&mut self, path: &str, offset: usize) -> Result<Vec<u8>, XsError> {
        let node = self.get_node(path, READ)?;
        let children = node.children_bytes();
        let mut out = format!("{}\0", node.generation).into_bytes();
        if offset >= children.len() {
            out.push(0);
            return Ok(out);
        }
        let max = PAYLOAD_MAX - out.len() - 1;
        let mut len = 0;
        // Whole names only: stop before the one that would not fit.
        for name in children[offset..].split_inclusive(|&b| b == 0) {
            if len + name.len() > max {
                break;
            }
            len += name.len();
        }
        out.extend_from_slice(&children[offset..offset + len]);
        if offset + len == children.len() {
            out.push(0);
        }
        Ok(out)
    }

    pub fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>, XsError> {
        Ok(self.get_node(path, READ)?.perms)
    }

    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        let perms = match self.get_node(path, WRITE) {
            Ok(mut node) => {
                node.value = value.to_vec();
                self.check_size(&node)?;
                let perms = node.perms.clone();
                self.view.put(path, node)?;
                perms
            }
            Err(XsError::ENOENT) => self.create(path, value)?,
            Err(e) => return Err(e),
        };
        self.view.fire(path, false, &perms, None);
        Ok(())
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        match self.get_node(path, WRITE) {
            Ok(_) => Ok(()),
            Err(XsError::ENOENT) => {
                let perms = self.create(path, &[])?;
                self.view.fire(path, false, &perms, None);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates `path` and its missing ancestors. New nodes inherit their parent's
    /// permissions; an unprivileged creator becomes their owner. Returns the new
    /// node's permissions.
    fn create(&mut self, path: &str, value: &[u8]) -> Result<Vec<Perm>, XsError> {
        let mut missing = vec![path.to_string()];
        let (mut parent_path, mut parent) = loop {
            let up = path::parent(missing.last().map_or(path, String::as_str)).to_string();
            match self.view.get(&up)? {
                Some(node) => break (up, node),
                None if up == "/" => return Err(XsError::EIO),
                None => missing.push(up),
            }
        };
        let privileged = self.caller.privileged();
        if !privileged {
            let owned = self.view.owned_by(self.caller.domid);
            if owned + missing.len() as i64 > i64::from(self.limits.nodes) {
                return Err(XsError::ENOSPC);
            }
        }
        // Build everything first and check the quotas, then write: nothing to undo.
        let mut writes = Vec::with_capacity(missing.len() + 1);
        for name in missing.iter().rev() {
            parent.children.push(path::basename(name).to_string());
            self.check_size(&parent)?;
            let mut perms = parent.perms.clone();
            if !privileged {
                if let Some(owner) = perms.first_mut() {
                    owner.domid = self.caller.domid;
                }
            }
            writes.push((parent_path, parent));
            parent_path = name.clone();
            parent = Node::new(perms);
        }
        parent.value = value.to_vec();
        self.check_size(&parent)?;
        let perms = parent.perms.clone();
        writes.push((parent_path, parent));
        for (p, node) in writes {
            self.view.put(&p, node)?;
        }
        Ok(perms)
    }

    /// Removes `path` and everything below it. Needs write access to `path` only.
    /// Removing a missing node whose parent exists succeeds.
    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        let node = match self.get_node(path, WRITE) {
            Ok(node) => node,
            Err(XsError::ENOENT) => {
                return match self.view.get(path::parent(path))? {
                    Some(_) => Ok(()),
                    None => Err(XsError::ENOENT),
                };
            }
            Err(e) => return Err(e),
        };
        if path == "/" {
            return Err(XsError::EINVAL);
        }
        // Post-order: children before their parent, as C's tree walk.
        let mut doomed: Vec<(String, Vec<Perm>)> = Vec::new();
        let mut stack = vec![(path.to_string(), node, false)];
        while let Some((p, n, expanded)) = stack.pop() {
            if expanded {
                doomed.push((p, n.perms));
                continue;
            }
            let children: Vec<String> = n.children.iter().map(|c| path::child(&p, c)).collect();
            stack.push((p, n, true));
            for c in children.into_iter().rev() {
                if let Some(cn) = self.view.get(&c)? {
                    stack.push((c, cn, false));
                }
            }
        }
        // Fire while the nodes (and their parents) can still be seen.
        for (p, perms) in &doomed {
            self.view.fire(p, p != path, perms, None);
        }
        for (p, _) in &doomed {
            self.view.delete(p)?;
        }
        let parent_path = path::parent(path);
        let mut parent = self.view.get(parent_path)?.ok_or(XsError::EIO)?;
        let base = path::basename(path);
        parent.children.retain(|c| c != base);
        // No quota check: shrinking a node must always work.
        self.view.put(parent_path, parent)
    }

    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        let privileged = self.caller.privileged();
        check_perm_list(perms, privileged, self.limits)?;
        let mut node = self.get_node(path, WRITE_OWNER)?;
        if !privileged && perms[0].domid != node.owner() {
            return Err(XsError::EPERM);
        }
        let old = core::mem::replace(&mut node.perms, perms.to_vec());
        self.check_size(&node)?;
        self.view.put(path, node)?;
        self.view.fire(path, false, perms, Some(old));
        Ok(())
    }
}

/// Checks a new permission list: not empty, and within the per-node quota.
pub(crate) fn check_perm_list(
    perms: &[Perm],
    privileged: bool,
    limits: &Limits,
) -> Result<(), XsError> {
    if perms.is_empty() {
        return Err(XsError::EINVAL);
    }
    if !privileged && perms.len() > limits.perms_per_node as usize {
        return Err(XsError::ENOSPC);
    }
    Ok(())
}
