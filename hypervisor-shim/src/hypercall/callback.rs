//! `set_callbacks` and `callback_op` (`callback.h`; Xen's xen/arch/x86/pv/callback.c).
//!
//! - Register: every type of `callback.h` for 64-bit guests (event, failsafe, syscall,
//!   syscall32, sysenter, NMI); a non-canonical address is -EINVAL; an unknown type
//!   (including the deprecated sysenter number 3) is -ENOSYS. `CALLBACKF_mask_events`
//!   is kept for failsafe, syscall, syscall32 and sysenter. The NMI callback is
//!   virtual-IDT entry 2 with events masked, as Xen stores it.
//! - Unregister: only NMI (its trap entry is cleared); the others are -EINVAL as in Xen
//!   (a guest cannot go back to having no event callback); unknown types -ENOSYS.
//! - `set_callbacks(event, failsafe, syscall)` registers the three and always returns 0,
//!   ignoring a non-canonical address like Xen does.

use xen_sys::*;

use super::env::Env;
use super::error::Result;
use crate::domain::Domain;
use crate::machine::Machine;
use crate::state::vcpu::{Callback, TrapEntry, TI_IF};

pub fn register(dom: &mut Domain, ty: u32, flags: u16, address: u64) -> Result<i64> {
    if !crate::paging::is_canonical(address) {
        return Err(XEN_EINVAL.into());
    }
    let cb = Callback {
        address,
        mask_events: flags as u32 & CALLBACKF_mask_events != 0,
    };
    let v = &mut dom.vcpu;
    match ty {
        // The event callback is always entered with events masked (TBF_INTERRUPT).
        CALLBACKTYPE_event => {
            v.event = Callback {
                address,
                mask_events: true,
            }
        }
        CALLBACKTYPE_failsafe => v.failsafe = cb,
        CALLBACKTYPE_syscall => v.syscall = cb,
        CALLBACKTYPE_syscall32 => v.syscall32 = cb,
        CALLBACKTYPE_sysenter => v.sysenter = cb,
        CALLBACKTYPE_nmi => {
            v.trap_table[2] = TrapEntry {
                address,
                cs: FLAT_KERNEL_CS as u16,
                flags: TI_IF,
            }
        }
        _ => return Err(XEN_ENOSYS.into()),
    }
    Ok(0)
}

pub fn set_callbacks(dom: &mut Domain, event: u64, failsafe: u64, syscall: u64) -> Result<i64> {
    // Each result is ignored, as Xen does.
    let _ = register(dom, CALLBACKTYPE_event, 0, event);
    let _ = register(dom, CALLBACKTYPE_failsafe, 0, failsafe);
    let _ = register(dom, CALLBACKTYPE_syscall, 0, syscall);
    Ok(0)
}

pub fn callback_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> Result<i64> {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        CALLBACKOP_register => {
            let op: callback_register = env.read(dom, arg)?;
            register(dom, op.type_ as u32, op.flags, op.address)
        }
        CALLBACKOP_unregister => {
            let op: callback_unregister = env.read(dom, arg)?;
            match op.type_ as u32 {
                CALLBACKTYPE_event
                | CALLBACKTYPE_failsafe
                | CALLBACKTYPE_syscall
                | CALLBACKTYPE_syscall32
                | CALLBACKTYPE_sysenter => Err(XEN_EINVAL.into()),
                CALLBACKTYPE_nmi => {
                    dom.vcpu.trap_table[2] = TrapEntry::default();
                    Ok(0)
                }
                _ => Err(XEN_ENOSYS.into()),
            }
        }
        _ => Err(XEN_ENOSYS.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::env::err;
    use super::super::tests::{World, SCRATCH};
    use super::*;

    fn reg(w: &mut World, ty: u32, flags: u16, address: u64) -> i64 {
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&(ty as u16).to_le_bytes());
        b[2..4].copy_from_slice(&flags.to_le_bytes());
        b[8..].copy_from_slice(&address.to_le_bytes());
        w.poke(SCRATCH, &b);
        w.call(
            __HYPERVISOR_callback_op,
            &[CALLBACKOP_register as u64, SCRATCH],
        )
    }

    fn unreg(w: &mut World, ty: u32) -> i64 {
        w.poke(SCRATCH, &ty.to_le_bytes());
        w.call(
            __HYPERVISOR_callback_op,
            &[CALLBACKOP_unregister as u64, SCRATCH],
        )
    }

    const A: u64 = 0xffff_ffff_8000_4000;

    #[test]
    fn register_every_type() {
        let mut w = World::new(true);
        let m = CALLBACKF_mask_events as u16;
        assert_eq!(reg(&mut w, CALLBACKTYPE_event, 0, A), 0);
        assert_eq!(reg(&mut w, CALLBACKTYPE_failsafe, m, A + 1), 0);
        assert_eq!(reg(&mut w, CALLBACKTYPE_syscall, m, A + 2), 0);
        assert_eq!(reg(&mut w, CALLBACKTYPE_syscall32, 0, A + 3), 0);
        assert_eq!(reg(&mut w, CALLBACKTYPE_sysenter, m, A + 4), 0);
        assert_eq!(reg(&mut w, CALLBACKTYPE_nmi, 0, A + 5), 0);
        let v = &w.dom.vcpu;
        assert_eq!(
            v.event,
            Callback {
                address: A,
                mask_events: true
            }
        );
        assert_eq!(
            v.failsafe,
            Callback {
                address: A + 1,
                mask_events: true
            }
        );
        assert_eq!(
            v.syscall,
            Callback {
                address: A + 2,
                mask_events: true
            }
        );
        assert_eq!(
            v.syscall32,
            Callback {
                address: A + 3,
                mask_events: false
            }
        );
        assert_eq!(v.sysenter.address, A + 4);
        assert_eq!(v.trap_table[2].address, A + 5);
        assert!(v.trap_table[2].interrupt_gate());
        assert_eq!(
            reg(&mut w, CALLBACKTYPE_sysenter_deprecated, 0, A),
            err(XEN_ENOSYS)
        );
        assert_eq!(reg(&mut w, 6, 0, A), err(XEN_ENOSYS));
        assert_eq!(
            reg(&mut w, CALLBACKTYPE_event, 0, 0x0000_8000_0000_0000),
            err(XEN_EINVAL)
        );
        assert_eq!(w.dom.vcpu.event.address, A);
        assert_eq!(
            w.call(__HYPERVISOR_callback_op, &[0, 0x10]),
            err(XEN_EFAULT)
        );
        assert_eq!(
            w.call(__HYPERVISOR_callback_op, &[7, SCRATCH]),
            err(XEN_ENOSYS)
        );
    }

    #[test]
    fn only_nmi_unregisters() {
        let mut w = World::new(true);
        assert_eq!(reg(&mut w, CALLBACKTYPE_nmi, 0, A), 0);
        for ty in [
            CALLBACKTYPE_event,
            CALLBACKTYPE_failsafe,
            CALLBACKTYPE_syscall,
            CALLBACKTYPE_syscall32,
            CALLBACKTYPE_sysenter,
        ] {
            assert_eq!(unreg(&mut w, ty), err(XEN_EINVAL));
        }
        assert_eq!(unreg(&mut w, 9), err(XEN_ENOSYS));
        assert_eq!(unreg(&mut w, CALLBACKTYPE_nmi), 0);
        assert_eq!(w.dom.vcpu.trap_table[2].address, 0);
    }

    #[test]
    fn set_callbacks_ignores_bad_addresses() {
        let mut w = World::new(true);
        assert_eq!(w.call(__HYPERVISOR_set_callbacks, &[A, 1 << 63, A + 2]), 0);
        assert_eq!(w.dom.vcpu.event.address, A);
        assert_eq!(w.dom.vcpu.failsafe.address, 0);
        assert_eq!(
            w.dom.vcpu.syscall,
            Callback {
                address: A + 2,
                mask_events: false
            }
        );
    }
}
