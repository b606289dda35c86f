//! Per-domain quotas: C xenstored's `quota_*` variables (`xenstored_core.c`, Xen 4.17),
//! which keep one domain from exhausting dom0's memory through xenstore.
//!
//! Quotas apply to unprivileged domains only; dom0 (and its in-process toolstack) is
//! unlimited, as in C xenstored.

/// Quotas applied to every unprivileged domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Nodes a domain may own (`-E`, `quota_nb_entry_per_domain`): ENOSPC beyond.
    pub nodes: u32,
    /// Watches per connection (`-W`, `quota_nb_watch_per_domain`): E2BIG beyond.
    pub watches: u32,
    /// Open transactions per connection (`-t`, `quota_max_transaction`): ENOSPC beyond.
    pub transactions: u32,
    /// Size of a node record (`-S`, `quota_max_entry_size`), counted as C counts its
    /// TDB record: a 24-byte header, 8 bytes per permission, the value and the child
    /// names with their NULs. A write reaching this size fails with ENOSPC.
    pub node_size: u32,
    /// Permission entries per node (`-A`, `quota_nb_perms_per_node`): ENOSPC beyond.
    pub perms_per_node: u32,
    /// Distinct nodes one transaction may touch (`quota_trans_nodes`): ENOSPC beyond.
    pub transaction_nodes: u32,
    /// Replies queued for a domain before xenstored stops reading its requests
    /// (`quota_req_outstanding`): see [`super::Xenstored::wants_input`].
    pub outstanding: u32,
    /// Bytes of queued output (replies and watch events) for one domain. Watch events
    /// that would go beyond are dropped, as C xenstored drops them when a domain is over
    /// its memory quota; replies are bounded by `outstanding` instead.
    pub output_bytes: u32,
}

impl Default for Limits {
    /// Xen 4.17's defaults; `output_bytes` (C has a 2.5 MB memory quota covering
    /// everything instead) is 64 KiB.
    fn default() -> Limits {
        Limits {
            nodes: 1000,
            watches: 128,
            transactions: 10,
            node_size: 2048,
            perms_per_node: 5,
            transaction_nodes: 1024,
            outstanding: 20,
            output_bytes: 64 * 1024,
        }
    }
}
