//! The committed store: every node by absolute name, the generation counter that
//! transactions use to detect conflicts, and the count of nodes each domain owns (the
//! node quota). C keeps the same in its TDB plus `struct domain`'s `nbentry`.

use super::node::Node;
use super::path;
use super::perms::Perm;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};

#[derive(Debug)]
pub(crate) struct Tree {
    nodes: BTreeMap<String, Node>,
    generation: u64,
    owned: BTreeMap<u16, u32>,
}

impl Tree {
    /// A store holding only the root, owned by dom0 with no access for others.
    pub fn new(root_perms: alloc::vec::Vec<Perm>) -> Tree {
        let mut tree = Tree {
            nodes: BTreeMap::new(),
            generation: 0,
            owned: BTreeMap::new(),
        };
        tree.put("/", Node::new(root_perms));
        tree
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// A fresh generation number: every change gets a new one.
    pub fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Stores `node` under `path` with a new generation. The caller keeps the parent's
    /// child list consistent.
    pub fn put(&mut self, path: &str, mut node: Node) {
        node.generation = self.next_generation();
        self.count(node.owner(), 1);
        if let Some(old) = self.nodes.insert(path.to_string(), node) {
            self.count(old.owner(), -1);
        }
    }

    /// Removes one node (not its children, not its parent's child entry).
    pub fn remove(&mut self, path: &str) -> Option<Node> {
        let old = self.nodes.remove(path)?;
        self.count(old.owner(), -1);
        Some(old)
    }

    /// Nodes owned by `domid`.
    pub fn owned_by(&self, domid: u16) -> u32 {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    fn count(&mut self, domid: u16, delta: i32) {
        let n = self.owned.entry(domid).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.owned.remove(&domid);
        }
    }

    /// Names of all nodes, in order.
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Checks the store's structure: the root exists; every other node's parent exists
    /// and lists it exactly once; every listed child exists; names are valid;
    /// permission lists are non-empty; the per-domain counts match.
    pub fn check(&self) -> Result<(), String> {
        if !self.nodes.contains_key("/") {
            return Err("no root".to_string());
        }
        let mut owned: BTreeMap<u16, u32> = BTreeMap::new();
        for (name, node) in &self.nodes {
            path::validate(name).map_err(|_| format!("invalid name {name:?}"))?;
            if node.perms.is_empty() {
                return Err(format!("{name}: no permissions"));
            }
            if node.generation > self.generation {
                return Err(format!("{name}: generation from the future"));
            }
            *owned.entry(node.owner()).or_insert(0) += 1;
            for c in &node.children {
                let child = path::child(name, c);
                if !self.nodes.contains_key(&child) {
                    return Err(format!("{name}: child {c} missing"));
                }
            }
            if name != "/" {
                let parent = self
                    .nodes
                    .get(path::parent(name))
                    .ok_or_else(|| format!("{name}: orphan"))?;
                let base = path::basename(name);
                let listed = parent.children.iter().filter(|c| *c == base).count();
                if listed != 1 {
                    return Err(format!("{name}: listed {listed} times by its parent"));
                }
            }
        }
        if owned != self.owned {
            return Err(format!("owner counts {:?} != {:?}", self.owned, owned));
        }
        Ok(())
    }
}
