//! A panic logs where and why, then crashes the domain (`SHUTDOWN_crash`), so the
//! hypervisor reports it and the toolstack sees a crash, not a clean exit.

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::println!("panic: {info}");
    crate::hypercall::shutdown(xen_sys::SHUTDOWN_crash)
}
