//! hypervisor-shim: the bare-metal binary. The arch layer lives here; the logic in the
//! library crate of the same name.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;
#[cfg(target_os = "none")]
mod arch;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hypervisor-shim runs on bare metal: build it with `cargo xtask build`");
    std::process::exit(2);
}
