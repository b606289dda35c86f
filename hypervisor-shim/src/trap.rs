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
/// The local APIC timer's interrupt: the scheduler's tick and every timer deadline.
pub const TIMER_VECTOR: u64 = 0xf0;
/// COM1's receive interrupt (through the I/O APIC): console input for dom0.
pub const SERIAL_VECTOR: u64 = 0xf1;
/// The devices' interrupts (through the I/O APIC, level-triggered): device `i` of the
/// shim's device list arrives on `DEVICE_VECTOR_BASE + i`.
pub const DEVICE_VECTOR_BASE: u64 = 0x30;
/// How many device vectors the entry stubs provide (microvm's 24 virtio-mmio slots).
pub const DEVICE_VECTORS: u64 = 24;

/// The device index of a device vector.
pub fn device_of_vector(vector: u64) -> Option<usize> {
    let i = vector.checked_sub(DEVICE_VECTOR_BASE)?;
    (i < DEVICE_VECTORS).then_some(i as usize)
}

/// The local APIC's spurious-interrupt vector (no EOI, nothing to do).
pub const SPURIOUS_VECTOR: u64 = 0xff;

/// Registers as the entry stubs save them: general registers, then the vector and error
/// code, then the frame the CPU pushes (and `iretq` pops).
///
/// 16-byte aligned: the arch layer points TSS.RSP0 just past a domain's saved frame so
/// the CPU pushes the next one in place, and the CPU aligns RSP0 down to 16 bytes.
#[repr(C, align(16))]
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

/// Mnemonic and name of an exception vector.
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE divide error",
        "#DB debug",
        "NMI",
        "#BP breakpoint",
        "#OF overflow",
        "#BR bound range",
        "#UD invalid opcode",
        "#NM device not available",
        "#DF double fault",
        "coprocessor overrun",
        "#TS invalid TSS",
        "#NP segment not present",
        "#SS stack fault",
        "#GP general protection",
        "#PF page fault",
        "reserved",
        "#MF x87 error",
        "#AC alignment check",
        "#MC machine check",
        "#XM SIMD error",
        "#VE virtualization",
        "#CP control protection",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "#HV injection",
        "#VC VMM communication",
        "#SX security",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// Writes the diagnostic for a guest (or shim) fault: what, where, and every register.
pub fn write_fault_report(
    out: &mut dyn core::fmt::Write,
    who: &str,
    f: &TrapFrame,
    cr2: u64,
) -> core::fmt::Result {
    writeln!(
        out,
        "{who}: {} (vector {}) error code {:#x} at rip={:#018x}",
        exception_name(f.vector),
        f.vector,
        f.error_code,
        f.rip
    )?;
    writeln!(
        out,
        "  cr2={cr2:#018x} rsp={:#018x} rflags={:#010x} cs={:#x} ss={:#x}",
        f.rsp, f.rflags, f.cs, f.ss
    )?;
    writeln!(
        out,
        "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
        f.rax, f.rbx, f.rcx, f.rdx
    )?;
    writeln!(
        out,
        "  rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}",
        f.rsi, f.rdi, f.rbp, f.r8
    )?;
    writeln!(
        out,
        "  r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}",
        f.r9, f.r10, f.r11, f.r12
    )?;
    writeln!(
        out,
        "  r13={:#018x} r14={:#018x} r15={:#018x}",
        f.r13, f.r14, f.r15
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn fault_report_names_the_fault_and_registers() {
        let f = TrapFrame {
            vector: 14,
            error_code: 6,
            rip: 0xffff_ffff_8000_1234,
            rax: 0x42,
            cs: 0xe033,
            ..Default::default()
        };
        let mut s = String::new();
        write_fault_report(&mut s, "d0 (crash) crashed", &f, 0xdead).unwrap();
        assert!(s.starts_with("d0 (crash) crashed: #PF page fault (vector 14) error code 0x6 at rip=0xffffffff80001234"));
        assert!(s.contains("cr2=0x000000000000dead"));
        assert!(s.contains("rax=0x0000000000000042"));
        assert_eq!(s.lines().count(), 6);
    }
}
