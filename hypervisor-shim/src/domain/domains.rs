//! Every domain the shim knows, by domain id (`domid_t` of `xen.h`).
//!
//! Domains are boxed so that a domain's saved registers stay put while others come and
//! go: the arch layer saves an entry straight into the running domain's `regs`. While
//! the shim handles an entry, the running domain is taken out ([`Domains::take`]) and
//! the hypercalls that reach another domain (event channels, domctl) find it here.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::domain::Domain;
use xen_sys::domid_t;

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

    pub fn get(&self, id: domid_t) -> Option<&Domain> {
        self.slots.get(id as usize)?.as_deref()
    }

    pub fn get_mut(&mut self, id: domid_t) -> Option<&mut Domain> {
        self.slots.get_mut(id as usize)?.as_deref_mut()
    }

    /// Takes domain `id` out while the shim works on it; [`Domains::put`] returns it.
    pub fn take(&mut self, id: domid_t) -> Option<Box<Domain>> {
        self.slots.get_mut(id as usize)?.take()
    }

    pub fn put(&mut self, dom: Box<Domain>) {
        let ok = self.insert(dom);
        debug_assert!(ok, "domain slot reused while taken");
    }

    /// Removes domain `id` for good.
    pub fn remove(&mut self, id: domid_t) -> Option<Box<Domain>> {
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
    pub fn ids(&self) -> impl Iterator<Item = domid_t> + '_ {
        self.iter().map(|d| d.id)
    }

    /// The first id after `after` (wrapping around) whose domain satisfies `pred`:
    /// round robin.
    pub fn next_after(&self, after: domid_t, pred: impl Fn(&Domain) -> bool) -> Option<domid_t> {
        let n = self.slots.len();
        (1..=n)
            .map(|k| (after as usize + k) % n.max(1))
            .find(|&i| self.slots[i].as_deref().is_some_and(&pred))
            .map(|i| i as domid_t)
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

/// Tests (and the `test-utils` fixtures) index by id; the shim itself never assumes
/// a domain exists.
#[cfg(any(test, feature = "test-utils"))]
impl core::ops::Index<domid_t> for Domains {
    type Output = Domain;
    fn index(&self, id: domid_t) -> &Domain {
        self.get(id).expect("no such domain")
    }
}

#[cfg(any(test, feature = "test-utils"))]
impl core::ops::IndexMut<domid_t> for Domains {
    fn index_mut(&mut self, id: domid_t) -> &mut Domain {
        self.get_mut(id).expect("no such domain")
    }
}
