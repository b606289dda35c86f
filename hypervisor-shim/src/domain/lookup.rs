//! The one family of domain lookups every hypercall uses, after Xen's
//! `rcu_lock_domain_by_any_id`, `rcu_lock_remote_domain_by_id` (xen/common/domain.c)
//! and the `XSM_TARGET` check of its default policy (xen/include/xsm/dummy.h).
//!
//! While its hypercall runs the caller is out of [`Domains`] (see `domains.rs`), so a
//! lookup is always "the caller, or one of the others".

use xen_sys::{domid_t, DOMID_SELF};

use super::{Domain, Domains};

/// `DOMID_SELF` means the caller.
pub fn resolve(caller: &Domain, id: domid_t) -> domid_t {
    if id == DOMID_SELF {
        caller.id
    } else {
        id
    }
}

/// `XSM_TARGET` of Xen's default policy: a domain acts on itself, the control domain
/// on any.
pub fn may_act_on(caller: &Domain, id: domid_t) -> bool {
    resolve(caller, id) == caller.id || caller.privileged
}

/// Domain `id` (`DOMID_SELF` or the caller's own id: the caller), or another one that
/// exists, dead or alive.
pub fn this_or_caller<'a>(
    caller: &'a mut Domain,
    others: &'a mut Domains,
    id: domid_t,
) -> Option<&'a mut Domain> {
    if resolve(caller, id) == caller.id {
        Some(caller)
    } else {
        others.get_mut(id)
    }
}

/// [`this_or_caller`], to read.
pub fn this_or_caller_ref<'a>(
    caller: &'a Domain,
    others: &'a Domains,
    id: domid_t,
) -> Option<&'a Domain> {
    if resolve(caller, id) == caller.id {
        Some(caller)
    } else {
        others.get(id)
    }
}

/// `rcu_lock_domain_by_id`: the domain with id `id`, the caller's own included, dead or
/// alive; `DOMID_SELF` is not an id.
pub fn by_id<'a>(
    caller: &'a mut Domain,
    others: &'a mut Domains,
    id: domid_t,
) -> Option<&'a mut Domain> {
    if id == caller.id {
        Some(caller)
    } else {
        others.get_mut(id)
    }
}

/// [`by_id`], to read.
pub fn by_id_ref<'a>(caller: &'a Domain, others: &'a Domains, id: domid_t) -> Option<&'a Domain> {
    if id == caller.id {
        Some(caller)
    } else {
        others.get(id)
    }
}

/// `rcu_lock_domain_by_any_id`: `DOMID_SELF` or an id of a domain that is alive (not
/// torn down); the resolved id.
pub fn live(caller: &Domain, others: &Domains, id: domid_t) -> Option<domid_t> {
    let id = resolve(caller, id);
    (id == caller.id || others.get(id).is_some_and(|d| !d.dead)).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Initial;
    use crate::trap::TrapFrame;
    use alloc::boxed::Box;
    use alloc::string::ToString;

    fn dom(id: domid_t, privileged: bool) -> Domain {
        let init = Initial {
            l4: 1,
            shared_info: 2,
            regs: TrapFrame::default(),
            nr_pages: 1,
        };
        Domain::new(id, "d".to_string(), privileged, init)
    }

    #[test]
    fn self_other_privilege_and_the_dead() {
        let mut me = dom(1, false);
        let mut others = Domains::new();
        others.insert(Box::new(dom(0, true)));
        let mut dead = dom(2, false);
        dead.dead = true;
        others.insert(Box::new(dead));
        assert_eq!(resolve(&me, DOMID_SELF), 1);
        assert!(may_act_on(&me, DOMID_SELF) && may_act_on(&me, 1));
        assert!(!may_act_on(&me, 0), "a domU acts on itself only");
        assert!(may_act_on(&others[0], 1), "the control domain on any");
        assert_eq!(
            this_or_caller(&mut me, &mut others, DOMID_SELF).unwrap().id,
            1
        );
        assert_eq!(this_or_caller(&mut me, &mut others, 2).unwrap().id, 2);
        assert!(this_or_caller(&mut me, &mut others, 7).is_none());
        assert_eq!(this_or_caller_ref(&me, &others, 0).unwrap().id, 0);
        assert_eq!(live(&me, &others, 0), Some(0));
        assert_eq!(live(&me, &others, 2), None, "torn down: not found");
        assert_eq!(live(&me, &others, DOMID_SELF), Some(1));
    }
}
