//! The thin, unsafe layer: boot, console, descriptor tables, entry stubs.
mod boot;
pub mod cpu;
pub mod entry;
pub mod serial;

use core::fmt::Write;
use hypervisor_shim::trap::TrapFrame;
use serial::Serial;

#[no_mangle]
extern "C" fn shim_main(hvm_start_info: u64) -> ! {
    Serial::init();
    let _ = writeln!(Serial, "(shim) booting, hvm_start_info at {hvm_start_info:#x}");
    cpu::init();
    let _ = writeln!(Serial, "(shim) tables loaded");
    exit_qemu(0x10)
}

#[no_mangle]
extern "C" fn trap_entry(frame: &mut TrapFrame) -> *const TrapFrame {
    let _ = writeln!(Serial, "(shim) trap {:#x} at {:#x}", frame.vector, frame.rip);
    exit_qemu(0x11)
}

pub fn exit_qemu(code: u32) -> ! {
    // SAFETY: isa-debug-exit at 0xf4 ends QEMU; on other machines the write is ignored.
    unsafe { x86_64::instructions::port::Port::<u32>::new(0xf4).write(code) };
    cpu::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Serial, "(shim) PANIC: {info}");
    exit_qemu(0x12)
}
