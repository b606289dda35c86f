//! Every domain the shim knows, by domain id (`domid_t` of `xen.h`).
//!
//! Domains are boxed so that a domain's saved registers stay put while others come and
//! go: the arch layer saves an entry straight into the running domain's `regs`. While
//! the shim handles an entry, the running domain is taken out ([`Domains::take`]) and
//! the hypercalls that reach another domain (event channels, domctl) find it here.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::domain::Domain;

/// A domain id (`domid_t`).
pub type DomId = u16;

#[derive(Debug, Default)]
pub struct Domains {
    slots: Vec<Option<Box<Domain>>>,
}

impl Domains {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `dom` under its id; `false` (and nothing changes) if the id is taken.
    pub fn insert(&mut self, dom: Box<Domain>) -> bool {
        let i = dom.id as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].is_some() {
            return false;
        }
        self.slots[i] = Some(dom);
        true
    }

    pub fn get(&self, id: DomId) -> Option<&Domain> {
        self.slots.get(id as usize)?.as_deref()
    }

    pub fn get_mut(&mut self, id: DomId) -> Option<&mut Domain> {
        self.slots.get_mut(id as usize)?.as_deref_mut()
    }

    /// Takes domain `id` out while the shim works on it; [`Domains::put`] returns it.
    pub fn take(&mut self, id: DomId) -> Option<Box<Domain>> {
        self.slots.get_mut(id as usize)?.take()
    }

    pub fn put(&mut self, dom: Box<Domain>) {
        let ok = self.insert(dom);
        debug_assert!(ok, "domain slot reused while taken");
    }

    /// Removes domain `id` for good.
    pub fn remove(&mut self, id: DomId) -> Option<Box<Domain>> {
        let d = self.take(id);
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        d
    }

    /// The domains present, in id order (a taken one is missing).
    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.slots.iter().filter_map(|d| d.as_deref())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Domain> {
        self.slots.iter_mut().filter_map(|d| d.as_deref_mut())
    }

    /// Ids of the domains present, in order.
    pub fn ids(&self) -> impl Iterator<Item = DomId> + '_ {
        self.iter().map(|d| d.id)
    }

    /// The first id after `after` (wrapping around) whose domain satisfies `pred`:
    /// round robin.
    pub fn next_after(&self, after: DomId, pred: impl Fn(&Domain) -> bool) -> Option<DomId> {
        let n = self.slots.len();
        (1..=n)
            .map(|k| (after as usize + k) % n.max(1))
            .find(|&i| self.slots[i].as_deref().is_some_and(&pred))
            .map(|i| i as DomId)
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

/// Tests index by id; the shim itself never assumes a domain exists.
#[cfg(test)]
impl core::ops::Index<DomId> for Domains {
    type Output = Domain;
    fn index(&self, id: DomId) -> &Domain {
        self.get(id).expect("no such domain")
    }
}

#[cfg(test)]
impl core::ops::IndexMut<DomId> for Domains {
    fn index_mut(&mut self, id: DomId) -> &mut Domain {
        self.get_mut(id).expect("no such domain")
    }
}
