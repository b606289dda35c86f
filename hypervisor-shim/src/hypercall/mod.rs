//! Hypercall dispatch: the number in RAX, arguments in RDI, RSI, RDX, R10, R8, R9
//! (`xen/include/public/arch-x86/xen-x86_64.h`), the result (0, a value, or `-XEN_E*`)
//! back in RAX. Every argument is guest-controlled: pointers are reached only through
//! the guest's own page tables ([`GuestMemory`]), so a bad one is `-EFAULT`.

mod callback;
pub mod console;
mod domain_info;
mod domctl;
mod env;
mod error;
mod event_channel;
mod gdt;
mod grant_table;
pub(crate) mod guest;
mod hvm_op;
mod iret;
mod memory;
mod misc;
#[cfg(test)]
mod mm_tests;
mod mmu;
mod mmuext;
mod multicall;
mod physdev;
mod sched;
mod sysctl;
mod timer;
mod trap_table;
mod vcpu_op;
mod version;
mod vm_assist;

pub use env::{Effects, Env};
pub use multicall::BATCH as MULTICALL_BATCH;
pub use version::is_null_hypercall;

use xen_sys::*;

use crate::domain::Domain;
use crate::machine::Machine;
#[cfg(test)]
use env::err;

/// Runs the hypercall described by `dom.regs` and stores its result in `dom.regs.rax`.
/// Only ever called for guest kernel mode: SYSCALL from guest user mode goes to the
/// guest's syscall callback instead (`traps::syscall_from_user`).
#[inline(always)]
pub fn dispatch<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain) {
    let r = &dom.regs;
    let args = [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9];
    let ret = call(env, dom, r.rax, args);
    dom.regs.rax = ret as u64;
}

/// Runs hypercall `nr` with `a` (also for each entry of a multicall).
#[inline]
pub(crate) fn call<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    nr: u64,
    a: [u64; 6],
) -> i64 {
    let r = match u32::try_from(nr).unwrap_or(u32::MAX) {
        __HYPERVISOR_console_io => console::console_io(env, dom, a[0], a[1], a[2]),
        __HYPERVISOR_sched_op => sched::sched_op(env, dom, a[0], a[1]),
        __HYPERVISOR_sched_op_compat => sched::sched_op_compat(env, dom, a[0], a[1]),
        __HYPERVISOR_xen_version => version::xen_version(env, dom, a[0], a[1]),
        __HYPERVISOR_set_trap_table => trap_table::set_trap_table(env, dom, a[0]),
        __HYPERVISOR_set_callbacks => callback::set_callbacks(dom, a[0], a[1], a[2]),
        __HYPERVISOR_callback_op => callback::callback_op(env, dom, a[0], a[1]),
        __HYPERVISOR_stack_switch => misc::stack_switch(dom, a[0], a[1]),
        __HYPERVISOR_set_segment_base => misc::set_segment_base(dom, a[0], a[1]),
        __HYPERVISOR_fpu_taskswitch => misc::fpu_taskswitch(dom, a[0]),
        __HYPERVISOR_vm_assist => vm_assist::vm_assist(dom, a[0], a[1]),
        __HYPERVISOR_iret => iret::iret(env, dom),
        __HYPERVISOR_multicall => multicall::multicall(env, dom, a[0], a[1]),
        __HYPERVISOR_physdev_op => physdev::physdev_op(env, dom, a[0], a[1]),
        __HYPERVISOR_mmu_update => mmu::mmu_update(env, dom, a[0], a[1], a[2], a[3]),
        __HYPERVISOR_update_va_mapping => mmu::update_va_mapping(env, dom, a[0], a[1], a[2]),
        __HYPERVISOR_update_va_mapping_otherdomain => {
            mmu::update_va_mapping_otherdomain(env, dom, a[0], a[1], a[2], a[3])
        }
        __HYPERVISOR_mmuext_op => mmuext::mmuext_op(env, dom, a[0], a[1], a[2], a[3]),
        __HYPERVISOR_memory_op => memory::memory_op(env, dom, a[0], a[1]),
        __HYPERVISOR_set_gdt => gdt::set_gdt(env, dom, a[0], a[1]),
        __HYPERVISOR_update_descriptor => gdt::update_descriptor(env, dom, a[0], a[1]),
        __HYPERVISOR_event_channel_op => event_channel::event_channel_op(env, dom, a[0], a[1]),
        __HYPERVISOR_event_channel_op_compat => {
            event_channel::event_channel_op_compat(env, dom, a[0])
        }
        __HYPERVISOR_set_timer_op => timer::set_timer_op(env, dom, a[0]),
        __HYPERVISOR_vcpu_op => vcpu_op::vcpu_op(env, dom, a[0], a[1], a[2]),
        __HYPERVISOR_domctl => domctl::domctl(env, dom, a[0]),
        __HYPERVISOR_sysctl => sysctl::sysctl(env, dom, a[0]),
        __HYPERVISOR_grant_table_op => grant_table::grant_table_op(env, dom, a[0], a[1], a[2]),
        __HYPERVISOR_hvm_op => hvm_op::hvm_op(env, dom, a[0], a[1]),
        _ => {
            if nr < 64 && dom.reported_enosys & (1 << nr) == 0 {
                dom.reported_enosys |= 1 << nr;
                log::warn!(
                    "d{}: hypercall {} ({}) not implemented: -ENOSYS",
                    dom.id,
                    nr,
                    name(nr)
                );
            } else if nr >= 64 {
                log::warn!("d{}: hypercall {nr:#x} does not exist: -ENOSYS", dom.id);
            }
            Err(XEN_ENOSYS.into())
        }
    };
    error::to_rax(r)
}

/// The `__HYPERVISOR_*` name of a hypercall number, for log lines.
pub fn name(nr: u64) -> &'static str {
    const NAMES: &[&str] = &[
        "set_trap_table",
        "mmu_update",
        "set_gdt",
        "stack_switch",
        "set_callbacks",
        "fpu_taskswitch",
        "sched_op_compat",
        "platform_op",
        "set_debugreg",
        "get_debugreg",
        "update_descriptor",
        "11",
        "memory_op",
        "multicall",
        "update_va_mapping",
        "set_timer_op",
        "event_channel_op_compat",
        "xen_version",
        "console_io",
        "physdev_op_compat",
        "grant_table_op",
        "vm_assist",
        "update_va_mapping_otherdomain",
        "iret",
        "vcpu_op",
        "set_segment_base",
        "mmuext_op",
        "xsm_op",
        "nmi_op",
        "sched_op",
        "callback_op",
        "xenoprof_op",
        "event_channel_op",
        "physdev_op",
        "hvm_op",
        "sysctl",
        "domctl",
        "kexec_op",
        "tmem_op",
        "argo_op",
        "xenpmu_op",
        "dm_op",
        "hypfs_op",
    ];
    NAMES.get(nr as usize).copied().unwrap_or("unknown")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mm::Mm;
    pub(crate) use crate::testing::world::{World, SCRATCH};

    #[test]
    fn unknown_hypercalls_are_enosys_and_logged_once() {
        let mut w = World::new(true);
        assert_eq!(w.call(__HYPERVISOR_xenoprof_op, &[]), err(XEN_ENOSYS));
        assert_ne!(w.dom.reported_enosys & (1 << __HYPERVISOR_xenoprof_op), 0);
        assert_eq!(w.call(1000, &[]), err(XEN_ENOSYS));
        w.dom.regs.rax = u64::MAX;
        let mut console = |_: &[u8]| {};
        let mut env = Env {
            machine: &mut w.m,
            console: &mut console,
            cmdline: "",
            mm: Mm {
                table: &mut w.table,
                alloc: &mut w.frames,
                m2p: &w.m2p,
            },
            domains: &mut w.others,
            clock: &w.clock,
            irqs: &mut w.irqs,
            effects: Effects::default(),
        };
        dispatch(&mut env, &mut w.dom);
        assert_eq!(w.dom.regs.rax as i64, err(XEN_ENOSYS));
    }
}
