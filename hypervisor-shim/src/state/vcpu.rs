//! A PV vCPU's virtual CPU state: what Xen keeps in `struct pv_vcpu`
//! (xen/arch/x86/include/asm/pv/domain.h, asm/domain.h) for a 64-bit PV guest: the
//! virtual IDT (`set_trap_table`, `trap_info` of `arch-x86/xen.h`), the callbacks of
//! `callback.h`, the kernel stack of `stack_switch`, guest kernel/user mode, the segment
//! bases of `set_segment_base`, the `vm_assist` bits, and the virtual CR0.TS, CR2, CR4
//! and IOPL that the privileged-instruction emulation reads and writes.

use core::mem::offset_of;

use xen_sys::{shared_info, vcpu_info};

use crate::machine::{write_bytes, Machine, Mfn};
use crate::paging::is_canonical;

/// CR4 as the guest reads it: PAE, OSFXSR, OSXMMEXCPT. The guest-controllable bits of
/// Xen (TSD, DE, FSGSBASE, OSXSAVE) are not honoured by the shim, so they are dropped.
pub const GUEST_CR4: u64 = 1 << 5 | 1 << 9 | 1 << 10;

/// Vectors in the virtual IDT.
pub const NR_VECTORS: usize = 256;

/// `trap_info.flags`: bits 0-1 are the DPL, bit 2 makes the entry an interrupt gate
/// (events masked on entry). These are `TI_GET_DPL`/`TI_GET_IF` of `arch-x86/xen.h`,
/// function-like macros bindgen cannot express.
pub const TI_DPL_MASK: u8 = 3;
pub const TI_IF: u8 = 4;

/// EFLAGS bits the shim reads or rewrites (architectural, not Xen ABI).
pub mod eflags {
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    /// What a guest frame may carry into the hardware RFLAGS: CF, PF, AF, ZF, SF, TF,
    /// IF, DF, OF, NT, RF, AC, VIF, VIP, ID (no IOPL, no VM, no reserved bits).
    pub const GUEST_SETTABLE: u64 = 0x003d_4fd7;
}

/// A vCPU's x87/SSE register state in the FXSAVE layout (Intel SDM Vol. 1, 10.5.1),
/// saved and restored by the arch layer when another domain takes the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct FpuArea(pub [u8; 512]);

impl Default for FpuArea {
    /// The state after FNINIT with SSE exceptions masked: FCW 0x37f, MXCSR 0x1f80.
    fn default() -> Self {
        let mut a = [0u8; 512];
        a[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FpuArea(a)
    }
}

/// CR0.TS (architectural).
pub const CR0_TS: u64 = 1 << 3;

/// One virtual IDT entry, as `set_trap_table` installed it (address 0: no handler).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapEntry {
    pub address: u64,
    pub cs: u16,
    pub flags: u8,
}

impl TrapEntry {
    pub fn dpl(&self) -> u8 {
        self.flags & TI_DPL_MASK
    }
    /// Entered like an interrupt gate: events are masked on delivery.
    pub fn interrupt_gate(&self) -> bool {
        self.flags & TI_IF != 0
    }
}

/// A registered callback (`CALLBACKTYPE_*`); address 0 means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Callback {
    pub address: u64,
    /// `CALLBACKF_mask_events`: deliver with events masked.
    pub mask_events: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vcpu {
    /// The virtual IDT. The NMI callback lives in entry 2, as in Xen.
    pub trap_table: [TrapEntry; NR_VECTORS],
    pub event: Callback,
    pub failsafe: Callback,
    pub syscall: Callback,
    pub syscall32: Callback,
    pub sysenter: Callback,
    /// `stack_switch`: where a bounce frame goes when the guest was in user mode.
    pub kernel_ss: u64,
    pub kernel_sp: u64,
    /// Guest kernel mode (Xen's `TF_kernel_mode`): kernel base pointer and kernel GS.
    pub kernel_mode: bool,
    pub fs_base: u64,
    pub gs_base_kernel: u64,
    pub gs_base_user: u64,
    /// `VMASST_TYPE_*` bits enabled by `vm_assist` (Xen keeps them per domain; one vCPU
    /// per domain for now).
    pub vm_assist: u64,
    /// Virtual CR0.TS (`fpu_taskswitch`, `mov %cr0`): the hardware TS while this vCPU runs.
    pub cr0_ts: bool,
    /// Virtual CR2: the last page-fault address delivered, or what the guest wrote.
    pub cr2: u64,
    /// Virtual CR4 as the guest reads it.
    pub cr4: u64,
    /// Virtual IOPL, in EFLAGS position (bits 12-13).
    pub iopl: u64,
    /// A multicall is running (Xen's `_MCSF_in_multicall`): no nesting, no preemption.
    pub in_multicall: bool,
    /// The segment bases, the guest mode or the virtual CR0.TS changed: the arch layer
    /// must load [`GuestCpu`] before resuming. Set even when a base is set to the value
    /// the shim last loaded, since the guest can change the hardware's copy itself by
    /// loading a selector (`mov %ax,%gs` clears it) without the shim seeing it.
    pub cpu_dirty: bool,
}

impl Default for Vcpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Vcpu {
    /// A vCPU as the domain builder starts it: kernel mode, no handlers, nothing masked.
    pub fn new() -> Self {
        Vcpu {
            trap_table: [TrapEntry::default(); NR_VECTORS],
            event: Callback::default(),
            failsafe: Callback::default(),
            syscall: Callback::default(),
            syscall32: Callback::default(),
            sysenter: Callback::default(),
            kernel_ss: xen_sys::FLAT_KERNEL_SS as u64,
            kernel_sp: 0,
            kernel_mode: true,
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
            vm_assist: 0,
            cr0_ts: false,
            cr2: 0,
            cr4: GUEST_CR4,
            iopl: 0,
            in_multicall: false,
            cpu_dirty: true,
        }
    }

    /// Xen's `toggle_guest_mode`: kernel <-> user. The base pointer and the active GS
    /// base follow the mode ([`Vcpu::gs_bases`], `Domain::active_l4`), which is what
    /// Xen's `swapgs` and CR3 switch do.
    pub fn toggle_guest_mode(&mut self) {
        self.kernel_mode = !self.kernel_mode;
        self.cpu_dirty = true;
    }

    /// Sets the virtual CR0.TS (loaded into the hardware before the guest resumes).
    pub fn set_cr0_ts(&mut self, ts: bool) {
        self.cr0_ts = ts;
        self.cpu_dirty = true;
    }

    /// (GS base, shadow GS base) as the hardware must hold them in the current mode.
    pub fn gs_bases(&self) -> (u64, u64) {
        if self.kernel_mode {
            (self.gs_base_kernel, self.gs_base_user)
        } else {
            (self.gs_base_user, self.gs_base_kernel)
        }
    }

    pub fn vm_assist(&self, ty: u32) -> bool {
        ty < 64 && self.vm_assist & (1 << ty) != 0
    }

    /// Xen's `iopl_ok`: may the current guest mode use I/O instructions (and cli/sti)?
    /// The guest kernel counts as CPL 1, or CPL 0 with `architectural_iopl`.
    pub fn iopl_ok(&self) -> bool {
        let cpl = if !self.kernel_mode {
            3
        } else if self.vm_assist(xen_sys::VMASST_TYPE_architectural_iopl) {
            0
        } else {
            1
        };
        cpl << 12 <= self.iopl
    }

    /// Xen's `permit_softint`: may `int n` reach a handler with this DPL?
    pub fn permit_softint(&self, dpl: u8) -> bool {
        dpl >= if self.kernel_mode { 1 } else { 3 }
    }
}

/// The segment bases and CR0.TS the arch layer loads before returning to a guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestCpu {
    pub fs_base: u64,
    /// `MSR_GS_BASE` (the active GS base).
    pub gs_base: u64,
    /// `MSR_SHADOW_GS_BASE` (what `swapgs` would bring in).
    pub gs_shadow: u64,
    pub cr0_ts: bool,
}

impl From<&Vcpu> for GuestCpu {
    fn from(v: &Vcpu) -> Self {
        let (gs_base, gs_shadow) = v.gs_bases();
        // Bases are only ever stored canonical; keep the invariant visible here too, as a
        // non-canonical value would #GP the shim's own WRMSR.
        let canon = |b: u64| if is_canonical(b) { b } else { 0 };
        GuestCpu {
            fs_base: canon(v.fs_base),
            gs_base: canon(gs_base),
            gs_shadow: canon(gs_shadow),
            cr0_ts: v.cr0_ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softint_dpl_rule_follows_guest_mode() {
        let mut v = Vcpu::new();
        assert!(!v.permit_softint(0));
        assert!(v.permit_softint(1) && v.permit_softint(3));
        v.toggle_guest_mode();
        assert!(!v.permit_softint(0) && !v.permit_softint(1) && !v.permit_softint(2));
        assert!(v.permit_softint(3));
    }

    #[test]
    fn iopl_rule() {
        let mut v = Vcpu::new();
        assert!(!v.iopl_ok());
        v.iopl = 1 << 12;
        assert!(v.iopl_ok());
        v.toggle_guest_mode();
        assert!(!v.iopl_ok());
        v.iopl = 3 << 12;
        assert!(v.iopl_ok());
        let mut v = Vcpu::new();
        v.vm_assist = 1 << xen_sys::VMASST_TYPE_architectural_iopl;
        assert!(v.iopl_ok());
    }

    #[test]
    fn gs_bases_swap_with_mode() {
        let mut v = Vcpu::new();
        v.gs_base_kernel = 0x1000;
        v.gs_base_user = 0x2000;
        assert_eq!(GuestCpu::from(&v).gs_base, 0x1000);
        assert_eq!(GuestCpu::from(&v).gs_shadow, 0x2000);
        v.toggle_guest_mode();
        assert_eq!(GuestCpu::from(&v).gs_base, 0x2000);
        assert_eq!(GuestCpu::from(&v).gs_shadow, 0x1000);
    }
}

/// Where a domain's vCPU 0 `vcpu_info` lives: in `shared_info`, or where the guest moved
/// it with `VCPUOP_register_vcpu_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuInfoAt {
    pub mfn: Mfn,
    pub offset: usize,
}

impl VcpuInfoAt {
    pub fn in_shared_info(shared_info: Mfn) -> Self {
        VcpuInfoAt {
            mfn: shared_info,
            offset: offset_of!(shared_info, vcpu_info),
        }
    }
    pub const UPCALL_PENDING: usize = offset_of!(vcpu_info, evtchn_upcall_pending);
    pub const UPCALL_MASK: usize = offset_of!(vcpu_info, evtchn_upcall_mask);
    pub const PENDING_SEL: usize = offset_of!(vcpu_info, evtchn_pending_sel);

    /// A byte field of the `vcpu_info`; `None` if its frame is not RAM.
    pub fn read_u8<M: Machine + ?Sized>(&self, m: &M, field: usize) -> Option<u8> {
        m.frame(self.mfn)
            .and_then(|f| f.get(self.offset + field).copied())
    }

    pub fn write_u8<M: Machine + ?Sized>(&self, m: &mut M, field: usize, v: u8) {
        write_bytes(m, self.mfn, self.offset + field, &[v]);
    }

    /// Sets bit `bit` of `evtchn_pending_sel`; whether it was already set.
    pub fn test_and_set_sel<M: Machine + ?Sized>(&self, m: &mut M, bit: u32) -> bool {
        crate::machine::test_and_set(m, self.mfn, self.offset + Self::PENDING_SEL, bit)
    }
}
