//! The register frame every entry into the shim builds, and the selectors the shim's GDT
//! provides (Xen's layout: the guest-visible flat selectors of
//! `arch-x86/xen-x86_64.h`, and the hypervisor's own in the reserved range).

/// Guest kernel and user code run in ring 3 with these (`FLAT_RING3_*`).
pub const RING3_CS64: u16 = xen_sys::FLAT_RING3_CS64 as u16;
pub const RING3_CS32: u16 = xen_sys::FLAT_RING3_CS32 as u16;
pub const RING3_SS: u16 = xen_sys::FLAT_RING3_SS64 as u16;
/// The shim's own ring-0 selectors and TSS, in the range Xen reserves for itself.
pub const SHIM_CS: u16 = 0xe008;
pub const SHIM_DS: u16 = 0xe010;
pub const TSS_SEL: u16 = 0xe040;

/// `TrapFrame::vector` for a SYSCALL (hypercall) entry.
pub const SYSCALL_VECTOR: u64 = 0x100;

/// Registers as the entry stubs save them: general registers, then the vector and error
/// code, then the frame the CPU pushes (and `iretq` pops).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// True when the entry came from a guest (ring 3), false for a fault in the shim.
    pub fn from_guest(&self) -> bool {
        self.cs & 3 == 3
    }
}
