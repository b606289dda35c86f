//! cpu: the CPU as a PV kernel sees it, through what the hypervisor emulates for it
//! (Xen's xen/arch/x86/pv/emul-priv-op.c, emul-inv-op.c, traps.c; `arch-x86/cpuid.h`,
//! `arch-x86/xen-x86_64.h`, `xen.h`):
//!
//! - CPUID behind the forced-emulation prefix (`XEN_CPUID`: `ud2; .ascii "xen"; cpuid`):
//!   the hypervisor leaves (signature "XenVMMXenVMM", version = `xen_version`), the
//!   vendor, the hypervisor bit of leaf 1.
//! - RDMSR/WRMSR of the FS and GS bases, checked through `%fs:0`/`%gs:0`, and
//!   `set_segment_base`; a forbidden MSR raises #GP(0).
//! - `fpu_taskswitch`: with the virtual CR0.TS set, an x87 or SSE instruction raises
//!   #NM, and the hypervisor clears TS as it delivers it; `clts` clears it too.
//! - `in`/`cli`/`sti` need the virtual IOPL: #GP(0) without it; with
//!   `VMASST_TYPE_architectural_iopl` the kernel counts as CPL 0, a port the domain may
//!   not use reads as all ones, and `cli`/`sti` do nothing (no event masking).
//!
//! - `HYPERVISOR_iret` with a frame exactly as delivered: `int3` with events masked,
//!   and a handler that hands the bounce frame back untouched, as Linux's
//!   `xen_iret` does. The frame's CS slot carries the saved upcall mask in bits 32-39
//!   (`create_bounce_frame`); Xen reads only the low 16 bits of the CS and SS slots.
//!
//! The command line `iret` runs only that last check.
//!
//! Values that legitimately differ between hypervisors (feature bits, maximum leaves)
//! are printed, not checked.
#![no_std]
#![no_main]

extern crate alloc;

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use libos::hypercall::{self, XenError};
use libos::traps::{self, Fault};
use libos::{println, shared_info};
use xen_sys::{
    __HYPERVISOR_iret, trap_info, SHUTDOWN_crash, VMASST_CMD_disable, VMASST_CMD_enable,
    VMASST_TYPE_architectural_iopl, FLAT_KERNEL_CS, SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER,
    XEN_CPUID_FIRST_LEAF, XEN_CPUID_SIGNATURE_EBX, XEN_CPUID_SIGNATURE_ECX,
    XEN_CPUID_SIGNATURE_EDX,
};

/// Architectural MSR numbers and bits (Intel SDM vol. 4; not part of Xen's public
/// headers).
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_APIC_BASE: u32 = 0x1b;
/// What Xen's PV `read_msr` answers for APIC_BASE on vCPU 0 (emul-priv-op.c): the
/// default base, enabled, BSP.
const GUEST_APIC_BASE: u64 = 0xfee0_0000 | 1 << 11 | 1 << 8;
/// CPUID.1:ECX bit 31, "running under a hypervisor".
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CR0.TS.
const CR0_TS: u64 = 1 << 3;
/// #GP and #NM.
const GP: u8 = 13;
const NM: u8 = 7;
/// A port dom0 may not use on Xen nor on the shim: PIT channel 0 (the hypervisor's
/// timer; Xen's `dom0_setup_permissions` denies 0x40-0x43).
const DENIED_PORT: u8 = 0x40;

/// What `%fs:0` / `%gs:0` read with each base.
static AREA_A: [u64; 1] = [0x4141_4141_4141_4141];
static AREA_B: [u64; 1] = [0x4242_4242_4242_4242];
static AREA_C: [u64; 1] = [0x4343_4343_4343_4343];

fn fail(what: &str) -> ! {
    println!("cpu: FAILED: {what}");
    hypercall::shutdown(SHUTDOWN_crash)
}

fn ok<T>(r: Result<T, XenError>, what: &str) -> T {
    r.unwrap_or_else(|e| fail(&alloc::format!("{what}: {e}")))
}

/// CPUID through the forced-emulation prefix: (eax, ebx, ecx, edx).
fn xen_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u64, u32, u32);
    // SAFETY: the prefix traps to the hypervisor, which emulates CPUID and skips it.
    // RBX belongs to LLVM: it is saved in a scratch register around the instruction.
    unsafe {
        asm!(
            "mov {t}, rbx",
            "ud2",
            ".ascii \"xen\"",
            "cpuid",
            "xchg {t}, rbx",
            t = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") subleaf => c,
            out("edx") d,
            options(nostack),
        )
    };
    [a, b as u32, c, d]
}

fn regs_str(regs: &[u32]) -> alloc::string::String {
    regs.iter()
        .flat_map(|r| r.to_le_bytes())
        .map(|b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect()
}

fn rdmsr(msr: u32) -> Result<u64, Fault> {
    let (mut lo, mut hi) = (0u32, 0u32);
    // SAFETY: the hypervisor emulates RDMSR or raises #GP, which `catch` turns into Err.
    traps::catch(|| unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack))
    })?;
    Ok(u64::from(hi) << 32 | u64::from(lo))
}

fn wrmsr(msr: u32, val: u64) -> Result<(), Fault> {
    // SAFETY: as for rdmsr; only segment bases are written here.
    traps::catch(|| unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") val as u32, in("edx") (val >> 32) as u32, options(nostack))
    })
}

fn fs0() -> u64 {
    let v: u64;
    // SAFETY: the FS base points at one of the AREA_* statics when this is called.
    unsafe { asm!("mov {}, fs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

fn gs0() -> u64 {
    let v: u64;
    // SAFETY: the GS base points at one of the AREA_* statics when this is called.
    unsafe { asm!("mov {}, gs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

fn cr0() -> u64 {
    let v: u64;
    // SAFETY: emulated for a PV kernel (it reads the virtual CR0).
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nostack, nomem)) };
    v
}

/// An x87 and an SSE instruction (both #NM while CR0.TS is set).
fn use_fpu() -> Result<(), Fault> {
    // SAFETY: `fnop` changes nothing; xmm0 is not used by this soft-float kernel.
    traps::catch(|| unsafe { asm!("fnop", "xorps xmm0, xmm0", options(nostack, nomem)) })
}

fn io_in(port: u8) -> Result<u8, Fault> {
    let mut v = 0u8;
    // SAFETY: a port read, emulated by the hypervisor (or #GP).
    traps::catch(|| unsafe {
        asm!("in al, dx", in("dx") u16::from(port), out("al") v, options(nostack, nomem))
    })?;
    Ok(v)
}

fn cli() -> Result<(), Fault> {
    // SAFETY: emulated (a no-op) or #GP, never a real interrupt-flag change.
    traps::catch(|| unsafe { asm!("cli", options(nostack, nomem)) })
}

fn sti() -> Result<(), Fault> {
    // SAFETY: as for cli.
    traps::catch(|| unsafe { asm!("sti", options(nostack, nomem)) })
}

fn upcall_mask() -> u8 {
    let si = shared_info::get().unwrap_or_else(|| fail("shared_info not mapped"));
    // SAFETY: shared_info is mapped; the hypervisor writes this byte too.
    unsafe { core::ptr::read_volatile(&raw const (*si).vcpu_info[0].evtchn_upcall_mask) }
}

fn expect_gp0(r: Result<impl core::fmt::Debug, Fault>, what: &str) -> Fault {
    match r {
        Err(f) if f.vector == GP && f.error_code == 0 => f,
        other => fail(&alloc::format!("{what}: expected #GP(0), got {other:?}")),
    }
}

fn cpuid_checks() {
    let [max, b, c, d] = xen_cpuid(XEN_CPUID_FIRST_LEAF, 0);
    let sig = regs_str(&[b, c, d]);
    println!("cpu: cpuid {XEN_CPUID_FIRST_LEAF:#x}: {sig:?}, max hypervisor leaf {max:#x}");
    if [b, c, d]
        != [
            XEN_CPUID_SIGNATURE_EBX,
            XEN_CPUID_SIGNATURE_ECX,
            XEN_CPUID_SIGNATURE_EDX,
        ]
    {
        fail("hypervisor signature is not XenVMMXenVMM");
    }
    let [ver, ..] = xen_cpuid(XEN_CPUID_FIRST_LEAF + 1, 0);
    let (major, minor) = hypercall::xen_version();
    println!(
        "cpu: cpuid {:#x}: version {}.{} (xen_version says {major}.{minor})",
        XEN_CPUID_FIRST_LEAF + 1,
        ver >> 16,
        ver & 0xffff
    );
    if (ver >> 16, ver & 0xffff) != (major, minor) {
        fail("CPUID's Xen version differs from xen_version's");
    }
    let [max_basic, b, c, d] = xen_cpuid(0, 0);
    println!(
        "cpu: cpuid 0: vendor {:?}, max basic leaf {max_basic:#x}",
        regs_str(&[b, d, c])
    );
    let [eax1, _, ecx1, edx1] = xen_cpuid(1, 0);
    println!("cpu: cpuid 1: eax={eax1:#x} ecx={ecx1:#x} edx={edx1:#x}");
    if ecx1 & CPUID1_ECX_HYPERVISOR == 0 {
        fail("CPUID.1:ECX.hypervisor is clear");
    }
    println!("cpu: cpuid 1: the hypervisor bit is set");
}

fn segment_checks() {
    let a = AREA_A.as_ptr() as u64;
    let b = AREA_B.as_ptr() as u64;
    let c = AREA_C.as_ptr() as u64;
    let m = |r: Result<(), Fault>, what: &str| {
        r.unwrap_or_else(|f| fail(&alloc::format!("{what}: {f}")))
    };
    let rd = |msr: u32| rdmsr(msr).unwrap_or_else(|f| fail(&alloc::format!("rdmsr {msr:#x}: {f}")));

    m(wrmsr(MSR_FS_BASE, a), "wrmsr FS_BASE");
    if rd(MSR_FS_BASE) != a || fs0() != AREA_A[0] {
        fail("wrmsr FS_BASE did not take effect");
    }
    println!("cpu: wrmsr/rdmsr FS_BASE: {a:#x}; %fs:0 reads {:#x}", fs0());
    ok(
        hypercall::set_segment_base(SEGBASE_FS, b),
        "set_segment_base(FS)",
    );
    if rd(MSR_FS_BASE) != b || fs0() != AREA_B[0] {
        fail("set_segment_base(SEGBASE_FS) did not take effect");
    }
    println!(
        "cpu: set_segment_base(FS): rdmsr FS_BASE {b:#x}; %fs:0 reads {:#x}",
        fs0()
    );

    ok(
        hypercall::set_segment_base(SEGBASE_GS_KERNEL, c),
        "set_segment_base(GS_KERNEL)",
    );
    ok(
        hypercall::set_segment_base(SEGBASE_GS_USER, a),
        "set_segment_base(GS_USER)",
    );
    if rd(MSR_GS_BASE) != c || gs0() != AREA_C[0] || rd(MSR_SHADOW_GS_BASE) != a {
        fail("set_segment_base(GS_KERNEL/GS_USER) did not take effect");
    }
    println!(
        "cpu: set_segment_base(GS_KERNEL, GS_USER): rdmsr GS_BASE {c:#x}, SHADOW_GS_BASE {a:#x}; %gs:0 reads {:#x}",
        gs0()
    );
    m(wrmsr(MSR_SHADOW_GS_BASE, b), "wrmsr SHADOW_GS_BASE");
    m(wrmsr(MSR_GS_BASE, a), "wrmsr GS_BASE");
    if rd(MSR_SHADOW_GS_BASE) != b || rd(MSR_GS_BASE) != a || gs0() != AREA_A[0] {
        fail("wrmsr GS_BASE/SHADOW_GS_BASE did not take effect");
    }
    println!(
        "cpu: wrmsr GS_BASE, SHADOW_GS_BASE: %gs:0 reads {:#x}",
        gs0()
    );
    for base in [SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER] {
        ok(
            hypercall::set_segment_base(base, 0),
            "clearing a segment base",
        );
    }

    // Xen fakes APIC_BASE for reads (Linux PV guests read it) and refuses writes.
    let apic = rd(MSR_APIC_BASE);
    println!("cpu: rdmsr APIC_BASE: {apic:#x}");
    if apic != GUEST_APIC_BASE {
        fail(&alloc::format!(
            "APIC_BASE reads {apic:#x}, Xen gives {GUEST_APIC_BASE:#x}"
        ));
    }
    let f = expect_gp0(wrmsr(MSR_APIC_BASE, apic), "wrmsr APIC_BASE");
    println!("cpu: wrmsr APIC_BASE: {f}");
    // EFER: the current value may be written back (Linux does), nothing else.
    let efer = rd(MSR_EFER);
    m(wrmsr(MSR_EFER, efer), "wrmsr EFER with its current value");
    println!("cpu: rdmsr EFER {efer:#x}; writing it back is allowed");
    // The SYSCALL entry point is the hypervisor's: not even readable.
    let f = expect_gp0(rdmsr(MSR_LSTAR), "rdmsr LSTAR");
    println!("cpu: rdmsr LSTAR: {f}");
}

fn fpu_checks() {
    if let Err(f) = use_fpu() {
        fail(&alloc::format!(
            "the FPU faults before fpu_taskswitch: {f} at {:#x}",
            f.rip
        ));
    }
    if cr0() & CR0_TS != 0 {
        fail(&alloc::format!(
            "CR0.TS is set before fpu_taskswitch: CR0 {:#x}",
            cr0()
        ));
    }
    ok(hypercall::fpu_taskswitch(true), "fpu_taskswitch(1)");
    println!(
        "cpu: fpu_taskswitch(1): CR0.TS reads {}",
        u8::from(cr0() & CR0_TS != 0)
    );
    match use_fpu() {
        Err(f) if f.vector == NM => println!("cpu: FPU use with TS set: {f}"),
        other => fail(&alloc::format!(
            "FPU use with TS set: expected #NM, got {other:?}"
        )),
    }
    // Xen clears the virtual TS when it delivers #NM (traps.c, do_device_not_available).
    if cr0() & CR0_TS != 0 {
        fail("CR0.TS still set after #NM was delivered");
    }
    if let Err(f) = use_fpu() {
        fail(&alloc::format!("FPU use after #NM: {f}"));
    }
    println!("cpu: after #NM, CR0.TS is clear and the FPU works");

    ok(hypercall::fpu_taskswitch(true), "fpu_taskswitch(1)");
    ok(hypercall::fpu_taskswitch(false), "fpu_taskswitch(0)");
    if let Err(f) = use_fpu() {
        fail(&alloc::format!("FPU use after fpu_taskswitch(0): {f}"));
    }
    println!("cpu: fpu_taskswitch(1) then (0): the FPU works");

    ok(hypercall::fpu_taskswitch(true), "fpu_taskswitch(1)");
    // SAFETY: emulated for a PV kernel: clears the virtual CR0.TS.
    unsafe { asm!("clts", options(nostack, nomem)) };
    if cr0() & CR0_TS != 0 {
        fail("clts did not clear CR0.TS");
    }
    if let Err(f) = use_fpu() {
        fail(&alloc::format!("FPU use after clts: {f}"));
    }
    println!("cpu: fpu_taskswitch(1) then clts: CR0.TS clear, the FPU works");
}

fn io_checks() {
    let f = expect_gp0(io_in(DENIED_PORT), "in without IOPL");
    println!("cpu: in {DENIED_PORT:#x} without virtual IOPL: {f}");
    let f = expect_gp0(cli(), "cli without IOPL");
    println!("cpu: cli without virtual IOPL: {f}");
    let f = expect_gp0(sti(), "sti without IOPL");
    println!("cpu: sti without virtual IOPL: {f}");

    ok(
        hypercall::vm_assist(VMASST_CMD_enable, VMASST_TYPE_architectural_iopl),
        "vm_assist(enable architectural_iopl)",
    );
    match io_in(DENIED_PORT) {
        Ok(0xff) => println!("cpu: with architectural_iopl: in {DENIED_PORT:#x} (a port dom0 may not use) reads 0xff"),
        other => fail(&alloc::format!("in {DENIED_PORT:#x} with IOPL: expected 0xff, got {other:?}")),
    }
    let before = upcall_mask();
    if let Err(f) = cli() {
        fail(&alloc::format!("cli with IOPL: {f}"));
    }
    let after_cli = upcall_mask();
    if let Err(f) = sti() {
        fail(&alloc::format!("sti with IOPL: {f}"));
    }
    let after_sti = upcall_mask();
    if (after_cli, after_sti) != (before, before) {
        fail(&alloc::format!(
            "cli/sti changed the event mask: {before} -> {after_cli} -> {after_sti}"
        ));
    }
    println!(
        "cpu: with architectural_iopl: cli and sti run and leave the event mask alone ({before})"
    );
    ok(
        hypercall::vm_assist(VMASST_CMD_disable, VMASST_TYPE_architectural_iopl),
        "vm_assist(disable architectural_iopl)",
    );
}

/// What the `int3` handler saw: how often it ran, and the CS slot of its frame.
static INT3_TAKEN: AtomicU64 = AtomicU64::new(0);
static INT3_CS_SLOT: AtomicU64 = AtomicU64::new(0);

global_asm!(
    ".pushsection .text.cpu_int3, \"ax\"",
    // RSP at Xen's frame: RCX, R11, RIP, CS, RFLAGS, RSP, SS. Restore RCX and R11, note
    // the CS slot, and return with the frame untouched: `flags` 0 (not from a syscall)
    // below RIP, then the hypercall page's iret entry pushes RAX, R11 and RCX itself.
    // No register is used, so nothing else needs saving.
    ".global cpu_int3_entry",
    "cpu_int3_entry:",
    "    pop rcx; pop r11",
    "    lock inc qword ptr [rip + {taken}]",
    "    push qword ptr [rsp + 8]",
    "    pop qword ptr [rip + {cs_slot}]",
    "    push 0",
    "    jmp hypercall_page + {iret_offset}",
    ".popsection",
    taken = sym INT3_TAKEN,
    cs_slot = sym INT3_CS_SLOT,
    iret_offset = const __HYPERVISOR_iret * 32,
);

unsafe extern "C" {
    fn cpu_int3_entry();
}

fn iret_checks() {
    let gate = [
        trap_info {
            vector: 3,
            flags: 3, // DPL 3, as for libos's own int3 gate
            cs: FLAT_KERNEL_CS as u16,
            address: cpu_int3_entry as *const () as u64,
        },
        trap_info::default(),
    ];
    ok(hypercall::set_trap_table(&gate), "set_trap_table(int3)");
    let was_enabled = libos::events::disable();
    // SAFETY: our handler returns right after the `int3` with every register as it was
    // (RCX and R11 restored by the handler, RAX by the hypercall page's iret entry).
    unsafe { asm!("int3", options(nostack)) };
    let mask_after = upcall_mask();
    libos::events::restore(was_enabled);
    ok(
        hypercall::set_trap_table(&traps::trap_table()),
        "set_trap_table(libos)",
    );
    let taken = INT3_TAKEN.load(Ordering::Relaxed);
    let cs_slot = INT3_CS_SLOT.load(Ordering::Relaxed);
    if taken != 1 {
        fail(&alloc::format!("int3 handler ran {taken} times"));
    }
    let saved_mask = (cs_slot >> 32) & 0xff;
    if saved_mask != 1 || cs_slot & 0xfffc != FLAT_KERNEL_CS as u64 & 0xfffc {
        fail(&alloc::format!(
            "int3 with events masked: CS slot {cs_slot:#x}, expected the kernel CS (RPL 0) with saved mask 1 in bits 32-39"
        ));
    }
    if mask_after != 1 {
        fail(&alloc::format!(
            "the event mask after iret is {mask_after}, the frame's RFLAGS.IF said 1"
        ));
    }
    println!("cpu: int3 with events masked: CS slot {cs_slot:#x} (saved mask 1); iret with the frame as delivered returns, events still masked");
}

fn main() {
    // `iret` runs that check alone (scenario `iret-masked`).
    if libos::start_info::get()
        .cmdline()
        .split_whitespace()
        .any(|w| w == "iret")
    {
        iret_checks();
        println!("cpu: success");
        return;
    }
    cpuid_checks();
    segment_checks();
    fpu_checks();
    io_checks();
    iret_checks();
    println!("cpu: success");
}

libos::main!(main);
