//! The local APIC timer (one-shot mode), the shim's only interrupt source: it ends time
//! slices and fires vCPU timers. Its rate and the TSC's are measured against the legacy
//! PIT at boot (channel 0, which every PC-compatible QEMU machine has, microvm
//! included; channel 2's gate needs the PC speaker device, which microvm lacks).

use hypervisor_shim::trap::{SPURIOUS_VECTOR, TIMER_VECTOR};
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use super::boot::DIRECTMAP;
use super::cpu::rdtsc;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_ENABLE: u64 = 1 << 11;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_LVT_TIMER: usize = 0x320;
const REG_INITIAL_COUNT: usize = 0x380;
const REG_CURRENT_COUNT: usize = 0x390;
const REG_DIVIDE: usize = 0x3e0;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration 0b1011: the timer counts at the bus clock itself.
const DIVIDE_BY_1: u32 = 0xb;

/// The PIT's input clock (Hz).
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 5 ms of PIT ticks.
const CALIBRATION_TICKS: u64 = PIT_HZ / 200;

static mut BASE: usize = 0;
/// The TSC value the timer will interrupt at, if it is counting: `arm` skips the
/// register write when an interrupt at or before the new deadline is already coming.
/// (Under TCG a write is an exit to QEMU's APIC model; the slice's deadline moved at
/// every switch between two domains trading packets, one write each time.)
static mut ARMED: Option<u64> = None;
static mut APIC_HZ: u64 = 0;
static mut TSC_HZ: u64 = 0;

fn reg(offset: usize) -> *mut u32 {
    // SAFETY: BASE is set once in `init` before any register access.
    (unsafe { BASE } + offset) as *mut u32
}

fn write(offset: usize, v: u32) {
    // SAFETY: a local APIC register, mapped through the direct map (below 4 GiB).
    unsafe { reg(offset).write_volatile(v) }
}

fn read(offset: usize) -> u32 {
    // SAFETY: as for `write`.
    unsafe { reg(offset).read_volatile() }
}

/// Reads PIT channel 0's counter (counting down).
fn pit_count() -> u16 {
    // SAFETY: the PIT's ports; the shim is their only user.
    unsafe {
        Port::<u8>::new(0x43).write(0x00); // latch channel 0
        let lo = Port::<u8>::new(0x40).read() as u16;
        let hi = Port::<u8>::new(0x40).read() as u16;
        lo | hi << 8
    }
}

/// Enables the local APIC with the timer masked, and measures the TSC's and the APIC
/// timer's rates. Returns the TSC rate (Hz), or `None` if the PIT does not count.
pub fn init() -> Option<u64> {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU with an APIC; setting the
    // enable bit (normally already set) changes nothing else.
    let base = unsafe {
        let mut msr = Msr::new(IA32_APIC_BASE);
        let v = msr.read();
        msr.write(v | APIC_ENABLE);
        v & 0xf_ffff_f000
    };
    // SAFETY: single CPU, before any interrupt is enabled.
    unsafe { BASE = (DIRECTMAP + base) as usize };
    write(REG_SVR, SVR_ENABLE | SPURIOUS_VECTOR as u32);
    write(REG_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);

    // SAFETY: PIT channel 0 in mode 2 (rate generator) from 0xffff: a free-running
    // down-counter. Its interrupt (IRQ 0) stays masked at the PIC and the I/O APIC.
    unsafe {
        Port::<u8>::new(0x43).write(0x34);
        Port::<u8>::new(0x40).write(0xff);
        Port::<u8>::new(0x40).write(0xff);
    }
    write(REG_INITIAL_COUNT, u32::MAX);
    let (tsc0, apic0) = (rdtsc(), read(REG_CURRENT_COUNT));
    let mut prev = pit_count();
    let mut ticks = 0u64;
    while ticks < CALIBRATION_TICKS {
        let now = pit_count();
        ticks += prev.wrapping_sub(now) as u64;
        prev = now;
        if ticks == 0 && rdtsc() - tsc0 > 1 << 32 {
            return None;
        }
    }
    let (tsc1, apic1) = (rdtsc(), read(REG_CURRENT_COUNT));
    write(REG_INITIAL_COUNT, 0);
    let tsc_hz = (tsc1 - tsc0) as u128 * PIT_HZ as u128 / ticks as u128;
    let apic_hz = apic0.wrapping_sub(apic1) as u128 * PIT_HZ as u128 / ticks as u128;
    // SAFETY: single CPU, written once here.
    unsafe {
        TSC_HZ = tsc_hz as u64;
        APIC_HZ = (apic_hz as u64).max(1);
    }
    write(REG_LVT_TIMER, TIMER_VECTOR as u32); // one-shot, unmasked
    Some(tsc_hz as u64)
}

/// The APIC timer's measured rate (Hz).
pub fn timer_hz() -> u64 {
    // SAFETY: written once in `init`.
    unsafe { APIC_HZ }
}

/// Makes the timer interrupt at TSC value `deadline` (at once if it passed), or no
/// later than it: an interrupt already due earlier is left as it is, and so is one
/// due while no deadline is needed. Such an early interrupt is harmless: every timer
/// interrupt makes the shim arm the timer again for what is due then
/// ([`fired`], and the tick's reschedule). A deadline beyond the counter's range
/// interrupts early the same way.
pub fn arm(deadline: Option<u64>) {
    let Some(deadline) = deadline else {
        return;
    };
    // SAFETY: single CPU, interrupts off in the shim.
    let armed = unsafe { ARMED };
    if armed.is_some_and(|a| a <= deadline) {
        return;
    }
    // SAFETY: written once in `init`.
    let (tsc_hz, apic_hz) = unsafe { (TSC_HZ.max(1), APIC_HZ) };
    let delta = deadline.saturating_sub(rdtsc()) as u128;
    let count = (delta * apic_hz as u128 / tsc_hz as u128).clamp(1, u32::MAX as u128);
    write(REG_INITIAL_COUNT, count as u32);
    // SAFETY: as above.
    unsafe { ARMED = Some(deadline) };
}

/// The timer interrupted: it counts no more until [`arm`].
pub fn fired() {
    // SAFETY: single CPU, interrupts off in the shim.
    unsafe { ARMED = None };
}

/// Acknowledges the interrupt being handled.
pub fn eoi() {
    write(REG_EOI, 0);
}
