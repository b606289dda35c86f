//! usermode: a PV kernel with a user process (`xen.h`, `callback.h`,
//! `arch-x86/xen-x86_64.h`). The kernel registers a syscall callback
//! (`callback_op(CALLBACKOP_register, CALLBACKTYPE_syscall)`), a kernel stack
//! (`stack_switch`), trap-table entries for #GP, #PF, `int $0x80` (DPL 3) and
//! `int $0x81` (DPL 0), a user base pointer (`MMUEXT_NEW_USER_BASEPTR`: its own L4, as
//! a PV kernel may) and separate user and kernel GS bases (`set_segment_base`); then it
//! enters user mode with `HYPERVISOR_iret` (CS `FLAT_USER_CS64`, SS `FLAT_USER_SS`).
//!
//! The user process (`user.rs`) enters the kernel six ways, in order; each entry is
//! checked (kind, RIP, error code, cr2, user mode in the frame's CS), printed as one
//! line, and answered with an `iret` back to user mode:
//!
//! 1. `syscall` -> the syscall callback; back with `VGCF_in_syscall`. The user saw its
//!    own GS base, the kernel sees its own (Xen swaps them on every mode switch).
//! 2. `int $0x80` -> the DPL-3 gate's handler.
//! 3. `int $0x81` -> #GP with error code `(0x81 << 3) | 2` (a DPL-0 gate; upstream
//!    Xen under QEMU's TCG passes on TCG's `(0x81 << 4) | 2`).
//! 4. `hlt`, `mov %cr3, %rax` -> #GP(0), from user mode.
//! 5. a read of an unmapped address -> #PF, error code 4 (user, read, not present),
//!    cr2 = the address.
//! 6. the exit `syscall`: `usermode: success`, power off.
#![no_std]
#![no_main]

extern crate alloc;

mod entry;
mod user;

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use libos::hypercall::{self, mmuext_mfn, mmuext_one};
use libos::{paging, println, shared_info, traps};
use xen_sys::{
    iret_context, trap_info, CALLBACKF_mask_events, CALLBACKTYPE_syscall, SHUTDOWN_crash,
    SHUTDOWN_poweroff, VGCF_in_syscall, FLAT_KERNEL_CS, FLAT_KERNEL_SS, FLAT_USER_CS64,
    FLAT_USER_SS, MMUEXT_NEW_USER_BASEPTR, SEGBASE_GS_KERNEL, SEGBASE_GS_USER,
};

use entry::{Saved, KIND_GP, KIND_INT80, KIND_PF, KIND_SYSCALL};
use user::{INT80_MARKER, INT_KERNEL_ONLY, INT_USER, SYS_EXIT, SYS_HELLO, UNMAPPED};

/// `trap_info.flags` bits 0-1: the gate's DPL (`xen.h`; bindgen cannot express the
/// `TI_SET_DPL` macro).
const TI_DPL_3: u8 = 3;
const TI_DPL_0: u8 = 0;
/// The interrupt flag in RFLAGS (architectural).
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS bit 1 is always set (architectural).
const RFLAGS_FIXED: u64 = 1 << 1;
/// #PF error code bits (architectural): present, write, user.
const PFEC_PRESENT: u64 = 1;
const PFEC_WRITE: u64 = 2;
const PFEC_USER: u64 = 4;

/// What %gs:0 reads with each GS base.
static KERNEL_GS_AREA: [u64; 1] = [0x6b65_726e_656c_6773]; // "kernelgs"
static USER_GS_AREA: [u64; 1] = [0x7573_6572_6773_0000]; // "usergs"

/// Which entry from the user process comes next (see the module doc).
static STEP: AtomicU64 = AtomicU64::new(0);

fn fail(what: &str) -> ! {
    println!("usermode: FAILED: {what}");
    hypercall::shutdown(SHUTDOWN_crash)
}

fn ok<T, E: core::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| {
        println!("usermode: FAILED: {what}: {e}");
        hypercall::shutdown(SHUTDOWN_crash)
    })
}

/// %gs:0 with the GS base now in effect.
fn gs0() -> u64 {
    let v: u64;
    // SAFETY: both GS bases point at a readable u64 of ours.
    unsafe { asm!("mov {}, gs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

/// Events stay masked while the user process runs: this kernel has no event callback.
fn user_rflags(rflags: u64) -> u64 {
    (rflags | RFLAGS_FIXED) & !RFLAGS_IF
}

/// Back to user mode at `rip` with the user stack of `f` (`HYPERVISOR_iret`; CS with
/// RPL 3 makes Xen switch to the user base pointer and GS base).
fn to_user(rip: u64, rsp: u64, rflags: u64, flags: u32) -> ! {
    let back = iret_context {
        rax: 0,
        r11: 0,
        rcx: 0,
        flags: u64::from(flags),
        rip,
        cs: u64::from(FLAT_USER_CS64),
        rflags: user_rflags(rflags),
        rsp,
        ss: u64::from(FLAT_USER_SS),
    };
    // SAFETY: user code at `rip` on its own stack; the kernel keeps nothing on this
    // stack that it needs after the return.
    unsafe { hypercall::iret(&back) }
}

fn main() {
    let u = user::labels();
    let l4 = paging::boot_l4_mfn();

    // Kernel-mode #GP/#PF keep going to libos's handlers.
    let libos_table = traps::trap_table();
    entry::set_libos_handlers(libos_table[13].address, libos_table[14].address);

    ok(
        hypercall::stack_switch(u64::from(FLAT_KERNEL_SS), entry::kernel_stack_top()),
        "stack_switch",
    );
    ok(
        hypercall::callback_register(
            CALLBACKTYPE_syscall,
            entry::syscall_entry(),
            CALLBACKF_mask_events as u16,
        ),
        "callback_op(register syscall)",
    );
    let gate = |vector: u8, flags: u8, address: u64| trap_info {
        vector,
        flags,
        cs: FLAT_KERNEL_CS as u16,
        address,
    };
    let table = [
        gate(13, TI_DPL_0, entry::gp_entry()),
        gate(14, TI_DPL_0, entry::pf_entry()),
        gate(INT_USER, TI_DPL_3, entry::int80_entry()),
        gate(INT_KERNEL_ONLY, TI_DPL_0, entry::int81_entry()),
        trap_info::default(),
    ];
    ok(hypercall::set_trap_table(&table), "set_trap_table");
    println!(
        "usermode: syscall callback, kernel stack, trap table (int {INT_USER:#x} DPL 3, int {INT_KERNEL_ONLY:#x} DPL 0) registered"
    );

    ok(
        mmuext_one(mmuext_mfn(MMUEXT_NEW_USER_BASEPTR, l4)),
        "MMUEXT_NEW_USER_BASEPTR",
    );
    println!("usermode: user base pointer: the kernel's L4 (mfn {l4:#x})");

    ok(
        hypercall::set_segment_base(SEGBASE_GS_KERNEL, KERNEL_GS_AREA.as_ptr() as u64),
        "set_segment_base(GS_KERNEL)",
    );
    ok(
        hypercall::set_segment_base(SEGBASE_GS_USER, USER_GS_AREA.as_ptr() as u64),
        "set_segment_base(GS_USER)",
    );
    if gs0() != KERNEL_GS_AREA[0] {
        fail("the kernel GS base is not in effect in kernel mode");
    }
    println!(
        "usermode: GS bases set: kernel mode reads %gs:0 = {:#x}",
        gs0()
    );
    // A PV kernel runs in ring 3, and Xen does not emulate `swapgs` for it (its
    // privileged-op filter admits no 0f 01 /7 but rdtscp): #GP(0). Xen switches the
    // GS bases itself on every change of guest mode.
    // SAFETY: swapgs only changes GS bases; if it did run, the second one undoes it.
    match traps::catch(|| unsafe { asm!("swapgs", "swapgs", options(nostack)) }) {
        Err(f) if f.vector == 13 && f.error_code == 0 => {
            println!("usermode: swapgs in the kernel: #GP error code 0x0 (the hypervisor swaps GS bases on mode switches)")
        }
        other => fail(&alloc::format!("swapgs in the kernel: {other:?}")),
    }
    if gs0() != KERNEL_GS_AREA[0] {
        fail("the kernel GS base changed");
    }

    println!(
        "usermode: entering user mode at {:#x}, user stack {:#x}",
        u.entry, u.stack_top
    );
    to_user(u.entry, u.stack_top, RFLAGS_FIXED, 0)
}

/// Every entry from the user process (called by the stubs in `entry.rs` on the
/// kernel stack).
///
/// # Safety
/// Only for the stubs: `s` points at what they pushed, followed by Xen's bounce frame.
pub unsafe extern "C" fn kernel_entry(s: *const Saved) -> ! {
    // SAFETY: the stubs pushed a `Saved` here, followed by Xen's bounce frame.
    let s = unsafe { &*s };
    // SAFETY: as above.
    let f = unsafe { entry::frame(s) };
    let u = user::labels();
    let step = STEP.fetch_add(1, Ordering::Relaxed);
    let cs = f.cs & 0xffff;
    let err = f.error_code.unwrap_or(0);
    if f.from_kernel() {
        fail(&alloc::format!(
            "step {step}: entry kind {} from kernel mode: {f:?}",
            s.kind
        ));
    }
    let expect = |cond: bool, what: &str| {
        if !cond {
            fail(&alloc::format!(
                "step {step}: {what}: kind {} rax={:#x} error={err:#x} {f:?}",
                s.kind,
                s.rax
            ))
        }
    };
    match step {
        0 => {
            expect(
                s.kind == KIND_SYSCALL && s.rax == SYS_HELLO,
                "expected syscall 1",
            );
            // `syscall` put the return address in RCX: Xen's frame has both.
            expect(s.rcx == f.rip, "frame RCX is not the return RIP");
            expect(f.ss & 0xffff == u64::from(FLAT_USER_SS), "frame SS");
            expect(
                s.rdi == USER_GS_AREA[0],
                "user mode did not see the user GS base",
            );
            expect(gs0() == KERNEL_GS_AREA[0], "the kernel GS base is not back");
            println!(
                "usermode: syscall from user mode reached the syscall callback: rip={:#x} cs={cs:#x}; user %gs:0 was {:#x}, kernel %gs:0 is {:#x}",
                f.rip, s.rdi, gs0()
            );
            to_user(f.rip, f.rsp, f.rflags, VGCF_in_syscall)
        }
        1 => {
            expect(s.kind == KIND_INT80, "expected int $0x80");
            expect(
                f.rip == u.after_int80,
                "int $0x80: RIP is not after the int",
            );
            expect(s.rdx == INT80_MARKER, "int $0x80: RDX lost");
            println!(
                "usermode: int $0x80 from user mode reached the DPL-3 gate: rip={:#x} cs={cs:#x}",
                f.rip
            );
            to_user(f.rip, f.rsp, f.rflags, 0)
        }
        2 => {
            // Hardware: the IDT index of the gate, `n << 3 | 2`. QEMU's TCG reports
            // `n << 4 | 2` in long mode, and Xen passes on what the CPU said.
            let hardware = (u64::from(INT_KERNEL_ONLY) << 3) | 2;
            let tcg = (u64::from(INT_KERNEL_ONLY) << 4) | 2;
            expect(
                s.kind == KIND_GP && f.rip == u.int81,
                "expected #GP at int $0x81",
            );
            expect(err == hardware || err == tcg, "int $0x81: wrong error code");
            println!(
                "usermode: int $0x81 (DPL 0) from user mode: #GP error code {err:#x}{} at rip={:#x} cs={cs:#x}",
                if err == tcg { " (QEMU TCG's encoding of (0x81 << 3) | 2)" } else { "" },
                f.rip
            );
            to_user(u.hlt, f.rsp, f.rflags, 0)
        }
        3 => {
            expect(s.kind == KIND_GP && f.rip == u.hlt, "expected #GP at hlt");
            expect(err == 0, "hlt: wrong error code");
            println!("usermode: hlt in user mode: #GP error code {err:#x}, cs={cs:#x}");
            to_user(u.movcr3, f.rsp, f.rflags, 0)
        }
        4 => {
            expect(
                s.kind == KIND_GP && f.rip == u.movcr3,
                "expected #GP at mov %cr3",
            );
            expect(err == 0, "mov %cr3: wrong error code");
            println!("usermode: mov %cr3 in user mode: #GP error code {err:#x}, cs={cs:#x}");
            to_user(u.pf, f.rsp, f.rflags, 0)
        }
        5 => {
            let cr2 = shared_info::cr2().unwrap_or(0);
            expect(
                s.kind == KIND_PF && f.rip == u.load,
                "expected #PF at the load",
            );
            expect(cr2 == UNMAPPED, "#PF: wrong cr2");
            expect(
                err & (PFEC_PRESENT | PFEC_WRITE | PFEC_USER) == PFEC_USER,
                "#PF: error code is not user/read/not-present",
            );
            println!(
                "usermode: user read of an unmapped address: #PF error code {err:#x} (user, read, not present), cr2={cr2:#x}"
            );
            to_user(u.exit, f.rsp, f.rflags, 0)
        }
        6 => {
            expect(
                s.kind == KIND_SYSCALL && s.rax == SYS_EXIT,
                "expected the exit syscall",
            );
            println!("usermode: exit syscall from user mode at rip={:#x}", f.rip);
            println!("usermode: success");
            hypercall::shutdown(SHUTDOWN_poweroff)
        }
        _ => fail(&alloc::format!("unexpected entry kind {} {f:?}", s.kind)),
    }
}

libos::main!(main);
