//! The thin, unsafe layer: boot, console, descriptor tables, entry stubs, and the glue
//! that hands every trap to [`Hypervisor::handle`].
mod apic;
mod boot;
pub mod cpu;
mod devices;
mod directmap;
pub mod entry;
mod ioapic;
mod rtc;
pub mod serial;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use hypervisor_shim::devices::LineChange;
use hypervisor_shim::exit::ShimExit;
use hypervisor_shim::frames::FrameAllocator;
use hypervisor_shim::hypervisor::{DomainSpec, Hypervisor, Next};
use hypervisor_shim::machine::PAGE_SIZE;
use hypervisor_shim::mm::m2p::M2p;
use hypervisor_shim::mm::FrameTable;
use hypervisor_shim::pv::build::bundle::{self, Role};
use hypervisor_shim::pv::cpuid::CpuidPolicy;
use hypervisor_shim::time::Clock;
use hypervisor_shim::trap::{
    write_fault_report, TrapFrame, SERIAL_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR,
};
use hypervisor_shim::{boot_info, cmdline};
use linked_list_allocator::LockedHeap;
use serial::Serial;
use spin::Mutex;

use directmap::DirectMap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();
const HEAP_BYTES: usize = 16 << 20;

static SHIM: Mutex<Option<Hypervisor<DirectMap>>> = Mutex::new(None);

unsafe extern "C" {
    static shim_phys_start: u8;
    static shim_phys_end: u8;
}

struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let _ = writeln!(Serial, "(shim) {}", record.args());
    }
    fn flush(&self) {}
}

fn fail(why: &str) -> ! {
    log::error!("cannot start: {why}");
    exit_qemu(ShimExit::ShimPanic)
}

#[no_mangle]
extern "C" fn shim_main(hvm_start_info: u64) -> ! {
    Serial::init();
    static LOGGER: SerialLogger = SerialLogger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    {
        static mut HEAP_SPACE: [u8; HEAP_BYTES] = [0; HEAP_BYTES];
        // SAFETY: called once, before any allocation; the array is used for nothing else.
        unsafe {
            HEAP.lock()
                .init(core::ptr::addr_of_mut!(HEAP_SPACE) as *mut u8, HEAP_BYTES)
        };
    }
    cpu::init();

    let mut machine = DirectMap;
    let info = boot_info::parse(&machine, hvm_start_info).unwrap_or_else(|e| fail(e));
    let opts = cmdline::ShimOptions::parse(&info.cmdline);
    log::info!(
        "hypervisor-shim {} starting; command line \"{}\"",
        env!("CARGO_PKG_VERSION"),
        info.cmdline
    );

    let mut frames = FrameAllocator::new();
    let limit = boot::DIRECTMAP_BYTES;
    let mut top = 0;
    for &(s, e) in &info.ram {
        let e = e.min(limit);
        if s < e {
            frames.add(s.div_ceil(PAGE_SIZE as u64), e / PAGE_SIZE as u64);
            top = top.max(e / PAGE_SIZE as u64);
        }
    }
    let (img_start, img_end) = (
        core::ptr::addr_of!(shim_phys_start) as u64,
        core::ptr::addr_of!(shim_phys_end) as u64,
    );
    frames.reserve(0, 0x100); // firmware, boot structures
    frames.reserve(img_start / 4096, img_end.div_ceil(4096));
    for &(s, size) in &info.modules {
        frames.reserve(s / 4096, (s + size).div_ceil(4096));
    }
    log::info!("{} MiB of RAM free for domains", frames.free_frames() >> 8);

    let m2p = M2p::new(&mut machine, &mut frames, top)
        .unwrap_or_else(|| fail("no memory for the M2P table"));
    let shim_l4: Vec<(usize, u64)> = [
        (M2p::l4_slot(), m2p.l4_entry),
        (boot::DIRECTMAP_SLOT, boot::directmap_l4_entry()),
    ]
    .into();

    let Some(&(mod_start, mod_size)) = info.modules.first() else {
        fail("no boot module: pass a PV kernel with -initrd")
    };
    let image =
        DirectMap::module(mod_start, mod_size).unwrap_or_else(|| fail("boot module out of reach"));
    let frame_table = FrameTable::new(top, &frames, &m2p, &shim_l4);
    let Some(tsc_hz) = apic::init() else {
        fail("the PIT does not count: cannot measure the TSC")
    };
    ioapic::route_com1();
    Serial::enable_rx_interrupt();
    let found = devices::find();
    let clock = Clock::new(tsc_hz, cpu::rdtsc(), rtc::unix_time(), 0);
    log::info!(
        "clock: TSC {} kHz, APIC timer {} kHz, wall clock {} s",
        tsc_hz / 1000,
        apic::timer_hz() / 1000,
        clock.wall_sec
    );
    let mut hv = Hypervisor::new(
        machine,
        frames,
        m2p,
        shim_l4,
        frame_table,
        String::from(&*info.cmdline),
        CpuidPolicy::from_host(cpu::host_cpuid, top),
        clock,
    );
    hv.add_devices(&found);
    match bundle::parse(image) {
        Ok(None) => {
            let nr_pages = opts
                .dom0_pages
                .min(hv.frames.free_frames().saturating_sub(64));
            let start = cpu::rdtsc();
            if let Err(e) = hv.create_initial_domain(image, nr_pages, opts.guest_cmdline) {
                fail(&alloc::format!("domain 0: {e}"))
            }
            // Read by `cargo xtask bench` (under -icount, TSC ticks count instructions).
            log::info!(
                "d0 built: {nr_pages} pages in {} TSC ticks",
                cpu::rdtsc() - start
            );
        }
        Ok(Some(b)) => {
            log::info!("bundle: {} domains", b.domains.len());
            let backends_in_dom0 = b.dom0().is_some_and(|d| d.backends);
            if backends_in_dom0 {
                log::info!("bundle: dom0 runs the back-ends: domUs start paused");
            }
            for (i, d) in b.domains.iter().enumerate() {
                let Some(domid) = b.domid_of(i) else {
                    fail("bundle: no domain id")
                };
                let start = cpu::rdtsc();
                let spec = DomainSpec {
                    domid,
                    name: d.name,
                    image: d.image,
                    nr_pages: d.memory_pages(),
                    cmdline: d.cmdline,
                    privileged: d.role == Role::Dom0,
                    backends_in_dom0,
                };
                if let Err(e) = hv.create_domain(&spec) {
                    fail(&alloc::format!("domain {domid} ({}): {e}", d.name))
                }
                log::info!(
                    "d{domid} built: {} pages in {} TSC ticks",
                    spec.nr_pages,
                    cpu::rdtsc() - start
                );
            }
        }
        Err(e) => fail(&alloc::format!("{e}")),
    }
    let mut guard = SHIM.lock();
    let hv = guard.insert(hv);
    let next = hv.start();
    let frame = resume(hv, next);
    drop(guard);
    // SAFETY: the frame is the first domain's initial register state, in the domain,
    // which stays put until the next entry.
    entry::enter(unsafe { &*frame })
}

#[no_mangle]
extern "C" fn trap_entry(frame: *const TrapFrame) -> *const TrapFrame {
    // SAFETY: the entry stub passes the frame it just built (in the running domain's
    // `regs`, on the IST stack, or on the shim stack for a fault in the shim).
    let frame_ref = unsafe { &*frame };
    let vector = frame_ref.vector;
    if !frame_ref.from_guest() {
        // The timer's interrupt while the shim idles in `hlt`: acknowledge, and let the
        // idle loop see what became due.
        match vector {
            // Input is drained once the idle loop has the shim again.
            TIMER_VECTOR | SERIAL_VECTOR => {
                if vector == TIMER_VECTOR {
                    apic::fired();
                }
                apic::eoi();
                return frame;
            }
            SPURIOUS_VECTOR => return frame,
            _ if devices::masked_on_entry(vector) => {
                apic::eoi();
                devices::fired_while_idle(vector);
                return frame;
            }
            _ => {}
        }
        let mut s = String::new();
        let _ = write_fault_report(&mut s, "fault in the shim", frame_ref, cpu::cr2());
        let _ = write!(Serial, "(shim) {s}");
        exit_qemu(ShimExit::ShimPanic)
    }
    match vector {
        // Nothing to acknowledge, nothing to do: the guest goes on (its registers are
        // in place).
        SPURIOUS_VECTOR => return frame,
        TIMER_VECTOR => {
            apic::fired();
            apic::eoi();
        }
        SERIAL_VECTOR => apic::eoi(),
        // The shim hands it to the line's owner (`Hypervisor::handle`).
        _ if devices::masked_on_entry(vector) => apic::eoi(),
        _ => {}
    }
    let cr2 = cpu::cr2();
    let mut guard = SHIM.lock();
    let Some(hv) = guard.as_mut() else {
        exit_qemu(ShimExit::ShimPanic)
    };
    // Usually the stub saved the registers in place; an IST entry (NMI, #DF, #MC) saved
    // them on its own stack.
    if hv.resume_frame().map(|r| r as *const TrapFrame) != Some(frame) {
        hv.save_entry_frame(frame_ref);
    }
    if vector == SERIAL_VECTOR {
        pump_console_input(hv);
    }
    let next = hv.handle(cr2, &mut |b| Serial::write_bytes(b));
    resume(hv, next)
}

/// Hands what was typed on the serial line to the hypervisor (for domain 0).
fn pump_console_input(hv: &mut Hypervisor<DirectMap>) {
    let mut buf = [0u8; 64];
    loop {
        let n = Serial::read_bytes(&mut buf);
        if n == 0 {
            return;
        }
        hv.console_input(&buf[..n]);
    }
}

/// Carries out what the shim decided: programs the timer, idles until something is
/// due, switches the CPU to the domain to run, and returns the frame to `iretq` to.
fn resume(hv: &mut Hypervisor<DirectMap>, mut next: Next) -> *const TrapFrame {
    loop {
        match next {
            Next::Resume { l4, work } => {
                apply_line_changes(hv);
                if work {
                    if let Some(deadline) = hv.take_deadline() {
                        apic::arm(deadline);
                    }
                    if let Some(sw) = hv.take_fpu_switch() {
                        // SAFETY: the areas are the domains' boxed, aligned FXSAVE areas.
                        unsafe { cpu::switch_fpu(sw.save, sw.load) };
                    }
                    if let Some(guest) = hv.take_guest_cpu() {
                        cpu::load_guest_state(&guest);
                    }
                }
                // SAFETY: every domain L4 carries the direct-map slot.
                unsafe { cpu::load_cr3(l4) };
                // The entry stub pops the registers from here and `iretq`s. The pointer
                // outlives the lock: there is one CPU, interrupts stay off, and nothing
                // touches the domain again before the next entry, after the `iretq`.
                let regs: *const TrapFrame = match hv.resume_frame() {
                    Some(regs) => regs,
                    None => exit_qemu(ShimExit::ShimPanic),
                };
                // SAFETY: the domain (and its frame) stays put until the next entry.
                cpu::set_rsp0(unsafe { entry::set_guest_frame(regs) });
                return regs;
            }
            Next::Idle => {
                apply_line_changes(hv);
                if let Some(deadline) = hv.take_deadline() {
                    apic::arm(deadline);
                }
                cpu::idle_until_interrupt();
                pump_console_input(hv);
                for vector in devices::take_fired() {
                    hv.device_interrupt(vector);
                }
                next = hv.wake_from_idle();
            }
            Next::Halt(exit) => exit_qemu(exit),
        }
    }
}

/// Masks and unmasks device lines at the I/O APIC as the hypercalls decided (a bind,
/// an EOI, a close).
fn apply_line_changes(hv: &mut Hypervisor<DirectMap>) {
    // The common case, on every return to a guest: nothing to do.
    if !hv.irqs.has_changes() {
        return;
    }
    for change in hv.take_line_changes() {
        let (gsi, masked) = match change {
            LineChange::Mask(gsi) => (gsi, true),
            LineChange::Unmask(gsi) => (gsi, false),
        };
        if let Some(vector) = devices::vector_of(gsi) {
            ioapic::set_masked(gsi, vector, masked);
        }
    }
}

pub fn exit_qemu(exit: ShimExit) -> ! {
    // SAFETY: isa-debug-exit at 0xf4 ends QEMU; on other machines the write is ignored.
    unsafe { x86_64::instructions::port::Port::<u32>::new(0xf4).write(exit.port_value()) };
    cpu::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Serial, "(shim) PANIC: {info}");
    exit_qemu(ShimExit::ShimPanic)
}
