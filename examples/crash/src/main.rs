//! crash: a guest that faults on purpose, to show that a fault kills only the guest and
//! the hypervisor reports it. The command line picks the fault:
//! `pagefault` (default: a write through a null pointer), `ud2`, `divide`, `gp`
//! (a privileged instruction in the PV kernel's ring 3), `panic`.
#![no_std]
#![no_main]

use libos::{println, start_info};

fn main() {
    let how = start_info::get()
        .cmdline()
        .split_whitespace()
        .next()
        .unwrap_or("pagefault");
    println!("crash: about to fault with '{how}'");
    match how {
        "ud2" => unsafe_fault::ud2(),
        "divide" => unsafe_fault::divide(core::hint::black_box(0)),
        "gp" => unsafe_fault::hlt(),
        "panic" => panic!("crash requested a panic"),
        _ => unsafe_fault::write_null(),
    }
    println!("crash: still alive after '{how}': the fault was not delivered");
}

mod unsafe_fault {
    pub fn write_null() {
        // SAFETY: not safe at all, on purpose: this page fault is the point.
        unsafe { core::ptr::write_volatile(core::hint::black_box(0x10 as *mut u64), 0xdead) };
    }
    pub fn ud2() {
        // SAFETY: raises #UD on purpose.
        unsafe { core::arch::asm!("ud2") };
    }
    pub fn divide(by: u32) {
        let r: u32;
        // SAFETY: raises #DE on purpose when `by` is 0.
        unsafe {
            core::arch::asm!("div {0:e}", in(reg) by, inout("eax") 1u32 => r, inout("edx") 0u32 => _)
        };
        core::hint::black_box(r);
    }
    pub fn hlt() {
        // SAFETY: hlt is privileged; a PV kernel runs in ring 3, so this raises #GP.
        unsafe { core::arch::asm!("hlt") };
    }
}

libos::main!(main);
