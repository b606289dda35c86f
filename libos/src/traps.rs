//! Exceptions (`xen.h`: `set_trap_table`, `trap_info`): a handler for every vector
//! 0-31, installed at start. Each prints a diagnostic (vector name, error code, where,
//! cr2 for #PF, kernel or user mode, registers) and crashes the domain
//! (`SHUTDOWN_crash`), unless the fault happens inside [`catch`], which turns it into
//! a value (used by tests that expect a fault).
//!
//! How Xen delivers an exception to a 64-bit PV guest (`xen/arch/x86/x86_64/entry.S`,
//! `create_bounce_frame`): it switches to the kernel stack if the guest was in user
//! mode, pushes a bounce frame and jumps to the handler with RSP pointing at
//!
//! ```text
//! RCX, R11, [error code], RIP, CS, RFLAGS, RSP, SS
//! ```
//!
//! (the error code only for vectors that have one). CS's RPL is cleared when the
//! guest was in kernel mode (that is how a PV kernel, which runs in ring 3, tells
//! the two apart), and bits 32-39 of the CS slot hold the saved event upcall mask.
//! Returning goes through `HYPERVISOR_iret`, never `iretq`.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use xen_sys::{iret_context, trap_info, SHUTDOWN_crash, FLAT_KERNEL_CS};

use crate::println;

/// `trap_info.flags` bits 0-1: the DPL of the gate (`xen.h`: "0-3: privilege level";
/// the `TI_SET_DPL` macro is not expressible by bindgen). DPL 3 lets `int3`/`into`
/// work from every ring, as on hardware.
const TI_DPL_3: u8 = 3;

global_asm!(
    ".pushsection .text.libos_traps, \"ax\"",
    // Each stub: push has-error-code, push the vector, then the common path. Vectors
    // 8, 10-14, 17, 21, 29 and 30 have an error code (Intel SDM vol. 3 §6.15).
    "libos_trap_0: push 0; push 0; jmp libos_trap_common",
    "libos_trap_1: push 0; push 1; jmp libos_trap_common",
    "libos_trap_2: push 0; push 2; jmp libos_trap_common",
    "libos_trap_3: push 0; push 3; jmp libos_trap_common",
    "libos_trap_4: push 0; push 4; jmp libos_trap_common",
    "libos_trap_5: push 0; push 5; jmp libos_trap_common",
    "libos_trap_6: push 0; push 6; jmp libos_trap_common",
    "libos_trap_7: push 0; push 7; jmp libos_trap_common",
    "libos_trap_8: push 1; push 8; jmp libos_trap_common",
    "libos_trap_9: push 0; push 9; jmp libos_trap_common",
    "libos_trap_10: push 1; push 10; jmp libos_trap_common",
    "libos_trap_11: push 1; push 11; jmp libos_trap_common",
    "libos_trap_12: push 1; push 12; jmp libos_trap_common",
    "libos_trap_13: push 1; push 13; jmp libos_trap_common",
    "libos_trap_14: push 1; push 14; jmp libos_trap_common",
    "libos_trap_15: push 0; push 15; jmp libos_trap_common",
    "libos_trap_16: push 0; push 16; jmp libos_trap_common",
    "libos_trap_17: push 1; push 17; jmp libos_trap_common",
    "libos_trap_18: push 0; push 18; jmp libos_trap_common",
    "libos_trap_19: push 0; push 19; jmp libos_trap_common",
    "libos_trap_20: push 0; push 20; jmp libos_trap_common",
    "libos_trap_21: push 1; push 21; jmp libos_trap_common",
    "libos_trap_22: push 0; push 22; jmp libos_trap_common",
    "libos_trap_23: push 0; push 23; jmp libos_trap_common",
    "libos_trap_24: push 0; push 24; jmp libos_trap_common",
    "libos_trap_25: push 0; push 25; jmp libos_trap_common",
    "libos_trap_26: push 0; push 26; jmp libos_trap_common",
    "libos_trap_27: push 0; push 27; jmp libos_trap_common",
    "libos_trap_28: push 0; push 28; jmp libos_trap_common",
    "libos_trap_29: push 1; push 29; jmp libos_trap_common",
    "libos_trap_30: push 1; push 30; jmp libos_trap_common",
    "libos_trap_31: push 0; push 31; jmp libos_trap_common",
    "libos_trap_common:",
    "    push rax; push rbx; push rdx; push rsi; push rdi; push rbp",
    "    push r8; push r9; push r10; push r12; push r13; push r14; push r15",
    "    mov rdi, rsp",
    "    and rsp, -16",
    "    call {handler}",
    "    ud2",
    ".popsection",
    ".pushsection .rodata.libos_traps, \"a\"",
    ".balign 8",
    "libos_trap_stubs:",
    ".quad libos_trap_0",
    ".quad libos_trap_1",
    ".quad libos_trap_2",
    ".quad libos_trap_3",
    ".quad libos_trap_4",
    ".quad libos_trap_5",
    ".quad libos_trap_6",
    ".quad libos_trap_7",
    ".quad libos_trap_8",
    ".quad libos_trap_9",
    ".quad libos_trap_10",
    ".quad libos_trap_11",
    ".quad libos_trap_12",
    ".quad libos_trap_13",
    ".quad libos_trap_14",
    ".quad libos_trap_15",
    ".quad libos_trap_16",
    ".quad libos_trap_17",
    ".quad libos_trap_18",
    ".quad libos_trap_19",
    ".quad libos_trap_20",
    ".quad libos_trap_21",
    ".quad libos_trap_22",
    ".quad libos_trap_23",
    ".quad libos_trap_24",
    ".quad libos_trap_25",
    ".quad libos_trap_26",
    ".quad libos_trap_27",
    ".quad libos_trap_28",
    ".quad libos_trap_29",
    ".quad libos_trap_30",
    ".quad libos_trap_31",
    ".popsection",
    // catch(data, trampoline): saves callee-saved registers and RSP, calls
    // trampoline(data); returns 0, or 1 when the trap handler came back through
    // `libos_catch_landing` after a fault.
    ".pushsection .text.libos_catch, \"ax\"",
    ".global libos_catch",
    "libos_catch:",
    "    push rbx; push rbp; push r12; push r13; push r14; push r15",
    "    sub rsp, 8",
    "    mov [rip + {catch_rsp}], rsp",
    "    call rsi",
    "    xor eax, eax",
    "    jmp 2f",
    "libos_catch_landing:",
    "    mov eax, 1",
    "2:  mov qword ptr [rip + {catch_rsp}], 0",
    "    add rsp, 8",
    "    pop r15; pop r14; pop r13; pop r12; pop rbp; pop rbx",
    "    ret",
    ".popsection",
    handler = sym libos_trap,
    catch_rsp = sym CATCH_RSP,
);

unsafe extern "C" {
    static libos_trap_stubs: [u64; 32];
    fn libos_catch_landing();
    fn libos_catch(data: *mut u8, trampoline: extern "C" fn(*mut u8)) -> u64;
}

/// RSP saved by `libos_catch` while a [`catch`] is running; 0 otherwise.
static CATCH_RSP: AtomicU64 = AtomicU64::new(0);
/// The fault [`catch`] caught: vector, error code, rip, cr2.
static CAUGHT: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// What the stubs leave on the stack, lowest address first.
#[repr(C)]
struct Saved {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    has_error: u64,
    /// Xen's bounce frame from here on.
    rcx: u64,
    r11: u64,
}

/// The CPU state Xen saved, decoded from the bounce frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub error_code: Option<u64>,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl Frame {
    /// CS's RPL is 0 when the guest kernel was interrupted (see the module doc).
    pub fn from_kernel(&self) -> bool {
        self.cs & 3 == 0
    }
}

/// A fault caught by [`catch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error_code: u64,
    pub rip: u64,
    pub cr2: u64,
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (short, _) = name(self.vector);
        write!(f, "fault {short} error code {:#x}", self.error_code)?;
        if self.vector == 14 {
            write!(f, " cr2={:#x}", self.cr2)?;
        }
        Ok(())
    }
}

/// Mnemonic and description of an exception vector.
pub fn name(vector: u8) -> (&'static str, &'static str) {
    const NAMES: [(&str, &str); 32] = [
        ("#DE", "divide error"),
        ("#DB", "debug"),
        ("NMI", "non-maskable interrupt"),
        ("#BP", "breakpoint"),
        ("#OF", "overflow"),
        ("#BR", "bound range exceeded"),
        ("#UD", "invalid opcode"),
        ("#NM", "device not available"),
        ("#DF", "double fault"),
        ("#CSO", "coprocessor segment overrun"),
        ("#TS", "invalid TSS"),
        ("#NP", "segment not present"),
        ("#SS", "stack-segment fault"),
        ("#GP", "general protection"),
        ("#PF", "page fault"),
        ("#15", "reserved vector 15"),
        ("#MF", "x87 floating-point error"),
        ("#AC", "alignment check"),
        ("#MC", "machine check"),
        ("#XM", "SIMD floating-point"),
        ("#VE", "virtualization exception"),
        ("#CP", "control protection"),
        ("#22", "reserved vector 22"),
        ("#23", "reserved vector 23"),
        ("#24", "reserved vector 24"),
        ("#25", "reserved vector 25"),
        ("#26", "reserved vector 26"),
        ("#27", "reserved vector 27"),
        ("#HV", "hypervisor injection"),
        ("#VC", "VMM communication"),
        ("#SX", "security exception"),
        ("#31", "reserved vector 31"),
    ];
    NAMES
        .get(usize::from(vector))
        .copied()
        .unwrap_or(("#?", "unknown vector"))
}

/// The trap table: every vector 0-31 to its stub, in the kernel code segment, plus
/// the zero terminator `set_trap_table` needs.
pub fn trap_table() -> [trap_info; 33] {
    let mut table = [trap_info::default(); 33];
    for (v, t) in table.iter_mut().take(32).enumerate() {
        // SAFETY: the stub table is 32 addresses in .rodata, filled by the linker.
        let address = unsafe { libos_trap_stubs[v] };
        *t = trap_info {
            vector: v as u8,
            flags: if v == 3 || v == 4 { TI_DPL_3 } else { 0 },
            cs: FLAT_KERNEL_CS as u16,
            address,
        };
    }
    table
}

/// Installs the handlers (`set_trap_table`).
pub(crate) fn init() -> Result<(), crate::hypercall::XenError> {
    crate::hypercall::set_trap_table(&trap_table())
}

/// Runs `f`; a fault inside it (in kernel mode) comes back as `Err(Fault)` instead of
/// crashing the domain. `f` is abandoned at the faulting instruction: it must not
/// hold locks or leave half-made state that matters.
pub fn catch<F: FnOnce()>(f: F) -> Result<(), Fault> {
    extern "C" fn trampoline<G: FnOnce()>(data: *mut u8) {
        // SAFETY: `data` is the `Option<F>` below, alive for the whole call.
        let f = unsafe { &mut *(data as *mut Option<G>) };
        if let Some(f) = f.take() {
            f()
        }
    }
    let mut f = Some(f);
    assert_eq!(CATCH_RSP.load(Ordering::Relaxed), 0, "catch does not nest");
    // SAFETY: libos_catch saves and restores the callee-saved registers and the stack
    // around the call; after a fault the handler resumes at its landing pad with the
    // stack pointer it saved, which is exactly how a `setjmp`/`longjmp` pair behaves.
    let faulted = unsafe { libos_catch(&mut f as *mut Option<F> as *mut u8, trampoline::<F>) } != 0;
    if faulted {
        let c = |i: usize| CAUGHT[i].load(Ordering::Relaxed);
        Err(Fault {
            vector: c(0) as u8,
            error_code: c(1),
            rip: c(2),
            cr2: c(3),
        })
    } else {
        Ok(())
    }
}

/// Called by the stubs with RSP at the saved registers.
extern "C" fn libos_trap(saved: *const Saved) -> ! {
    // SAFETY: the stub pushed a `Saved` at this address, followed by Xen's frame.
    let s = unsafe { &*saved };
    let vector = s.vector as u8;
    // The frame after RCX, R11: [error code], RIP, CS, RFLAGS, RSP, SS.
    // SAFETY: Xen's frame continues right after R11 (see the module doc).
    let tail = unsafe { (&s.r11 as *const u64).add(1) };
    let word = |i: usize| {
        // SAFETY: Xen wrote 5 words (6 with an error code) after R11.
        unsafe { tail.add(i).read() }
    };
    let (error_code, o) = if s.has_error != 0 {
        (Some(word(0)), 1)
    } else {
        (None, 0)
    };
    let frame = Frame {
        error_code,
        rip: word(o),
        cs: word(o + 1),
        rflags: word(o + 2),
        rsp: word(o + 3),
        ss: word(o + 4),
    };
    let cr2 = if vector == 14 {
        crate::shared_info::cr2()
    } else {
        None
    };

    let catch_rsp = CATCH_RSP.load(Ordering::Relaxed);
    if catch_rsp != 0 && frame.from_kernel() {
        for (slot, v) in CAUGHT.iter().zip([
            u64::from(vector),
            error_code.unwrap_or(0),
            frame.rip,
            cr2.unwrap_or(0),
        ]) {
            slot.store(v, Ordering::Relaxed);
        }
        let back = iret_context {
            rax: 0,
            r11: 0,
            rcx: 0,
            flags: 0,
            rip: libos_catch_landing as *const () as u64,
            // Kernel CS as Xen gave it (RPL 0: back to kernel mode), without the
            // saved upcall mask in bits 32-39.
            cs: frame.cs & 0xffff,
            rflags: frame.rflags,
            rsp: catch_rsp,
            ss: frame.ss & 0xffff,
        };
        // SAFETY: returns to libos_catch's landing pad on the stack it saved.
        unsafe { crate::hypercall::iret(&back) }
    }

    report(vector, &frame, cr2, s);
    crate::hypercall::shutdown(SHUTDOWN_crash)
}

fn report(vector: u8, f: &Frame, cr2: Option<u64>, s: &Saved) {
    let (short, long) = name(vector);
    let mode = if f.from_kernel() { "kernel" } else { "user" };
    match f.error_code {
        Some(e) => println!(
            "libos: fatal exception {short} {long} (vector {vector}) in {mode} mode, error code {e:#x}"
        ),
        None => println!("libos: fatal exception {short} {long} (vector {vector}) in {mode} mode"),
    }
    println!(
        "libos:   rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x}",
        f.rip,
        f.cs & 0xffff,
        f.rflags,
        f.rsp,
        f.ss & 0xffff
    );
    if vector == 14 {
        match cr2 {
            Some(cr2) => {
                let e = f.error_code.unwrap_or(0);
                println!(
                    "libos:   cr2={cr2:#018x} ({}, {}{})",
                    if e & 2 != 0 { "write" } else { "read" },
                    if e & 1 != 0 {
                        "protection violation"
                    } else {
                        "not present"
                    },
                    if e & 16 != 0 {
                        ", instruction fetch"
                    } else {
                        ""
                    },
                )
            }
            None => println!("libos:   cr2 unknown (shared_info not mapped yet)"),
        }
    }
    println!(
        "libos:   rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
        s.rax, s.rbx, s.rcx, s.rdx, s.rsi, s.rdi, s.rbp
    );
    println!(
        "libos:   r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x}",
        s.r8, s.r9, s.r10, s.r11, s.r12, s.r13, s.r14, s.r15
    );
    println!("libos: crashing the domain");
}
