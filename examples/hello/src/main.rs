//! hello: the smallest appliance. Greets, tells what it learned from `start_info` and the
//! hypervisor, then powers the domain off.
#![no_std]
#![no_main]

use libos::{hypercall, println, start_info};

fn main() {
    let si = start_info::get();
    let (major, minor) = hypercall::xen_version();
    let extra = hypercall::xen_extraversion();
    println!("Hello from hello, a Xen PV guest on libos!");
    println!(
        "  hypervisor: Xen {major}.{minor}{}",
        extra.as_ref().map_or("", |e| e.as_str())
    );
    println!(
        "  start_info: {}, {} pages ({} MiB)",
        si.magic(),
        si.nr_pages(),
        si.nr_pages() / 256
    );
    println!(
        "  flags: {:#x} (privileged: {}, initial domain: {})",
        si.flags(),
        si.privileged(),
        si.initial_domain()
    );
    println!("  command line: \"{}\"", si.cmdline());
    let mut v = alloc::vec::Vec::new();
    v.extend(1..=10u32);
    println!(
        "  heap works: sum of 1..=10 from a Vec is {}",
        v.iter().sum::<u32>()
    );
    println!("Goodbye: powering off.");
}

extern crate alloc;
libos::main!(main);
