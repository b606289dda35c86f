//! One node of the store (C's `struct node` and its TDB record,
//! `struct xs_tdb_record_hdr` in `xenstored_core.h`).

use super::perms::Perm;
use alloc::string::String;
use alloc::vec::Vec;

/// Bytes C's record header takes (generation, num_perms, datalen, childlen, padded).
const RECORD_HEADER: usize = 24;
/// Bytes one `struct xs_permissions` takes in a record.
const RECORD_PERM: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The value: any bytes.
    pub value: Vec<u8>,
    /// Never empty: the first entry is the owner.
    pub perms: Vec<Perm>,
    /// Child names in creation order (C keeps the NUL-separated list in that order).
    pub children: Vec<String>,
    /// Store generation of the last change; transactions compare it at commit.
    pub generation: u64,
}

impl Node {
    pub fn new(perms: Vec<Perm>) -> Node {
        Node {
            value: Vec::new(),
            perms,
            children: Vec::new(),
            generation: 0,
        }
    }

    /// The owning domain.
    pub fn owner(&self) -> u16 {
        self.perms.first().map_or(0, |p| p.domid)
    }

    /// Size of the node as C accounts it against the node-size quota.
    pub fn record_size(&self) -> usize {
        RECORD_HEADER + RECORD_PERM * self.perms.len() + self.value.len() + self.children_len()
    }

    /// Length of the NUL-separated child list.
    pub fn children_len(&self) -> usize {
        self.children.iter().map(|c| c.len() + 1).sum()
    }

    /// The child list in wire form: each name followed by a NUL.
    pub fn children_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.children_len());
        for c in &self.children {
            out.extend_from_slice(c.as_bytes());
            out.push(0);
        }
        out
    }
}
