//! Descriptor tables and system registers: the GDT laid out as Xen lays out its reserved
//! entries (so the guest-visible flat ring-3 selectors of `arch-x86/xen-x86_64.h` are
//! valid), the TSS, the IDT, and the SYSCALL MSRs.

use core::arch::asm;
use core::mem::size_of;

use hypervisor_shim::state::vcpu::{FpuArea, GuestCpu};
use hypervisor_shim::trap::{SHIM_CS, SHIM_DS, TSS_SEL};
use x86_64::registers::model_specific::Msr;

use super::entry;

/// Entries up to and including the TSS descriptor at `TSS_SEL` (16 bytes).
const GDT_ENTRIES: usize = (TSS_SEL as usize >> 3) + 2;

#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct IdtEntry([u64; 2]);

#[repr(C, align(4096))]
struct Tables {
    gdt: [u64; GDT_ENTRIES],
    idt: [IdtEntry; 256],
    tss: Tss,
}

static mut TABLES: Tables = Tables {
    gdt: [0; GDT_ENTRIES],
    idt: [IdtEntry([0; 2]); 256],
    tss: Tss {
        _reserved0: 0,
        rsp: [0; 3],
        _reserved1: 0,
        ist: [0; 7],
        _reserved2: 0,
        _reserved3: 0,
        iomap_base: size_of::<Tss>() as u16,
    },
};

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_FMASK: u32 = 0xc000_0084;
/// RFLAGS bits cleared on SYSCALL: TF, IF, DF, IOPL, NT, AC. Clearing IF matters: SYSCALL
/// does not switch stacks, so nothing may interrupt the entry stub before it does.
const SYSCALL_FMASK: u64 = 0x4_7700;

fn gate(handler: u64, dpl: u64, ist: u64) -> IdtEntry {
    let low = (handler & 0xffff)
        | ((SHIM_CS as u64) << 16)
        | (ist << 32)
        | ((0x8e | (dpl << 5)) << 40)
        | ((handler >> 16) & 0xffff) << 48;
    IdtEntry([low, handler >> 32])
}

/// Loads the GDT, TSS and IDT and programs SYSCALL. Called once, on the boot stack.
pub fn init() {
    let stacks = entry::stacks();
    // SAFETY: single CPU, called once before any guest runs; nothing else references
    // TABLES yet, and the descriptors written are the ones the entry stubs expect.
    unsafe {
        let t = &mut *core::ptr::addr_of_mut!(TABLES);
        let flat = |sel: u16, bits: u64| (sel as usize >> 3, bits);
        for (i, d) in [
            flat(SHIM_CS, 0x00af_9a00_0000_ffff),
            flat(SHIM_DS, 0x00cf_9200_0000_ffff),
            flat(hypervisor_shim::trap::RING3_CS32, 0x00cf_fa00_0000_ffff),
            flat(hypervisor_shim::trap::RING3_SS, 0x00cf_f200_0000_ffff),
            flat(hypervisor_shim::trap::RING3_CS64, 0x00af_fa00_0000_ffff),
        ] {
            t.gdt[i] = d;
        }
        t.tss.rsp[0] = stacks.kernel_top;
        t.tss.ist[0] = stacks.ist_top;
        let base = core::ptr::addr_of!(t.tss) as u64;
        let limit = size_of::<Tss>() as u64 - 1;
        let i = TSS_SEL as usize >> 3;
        t.gdt[i] = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        t.gdt[i + 1] = base >> 32;

        for (v, stub) in entry::trap_stubs().iter().enumerate() {
            // #BP and #OF may be raised by the guest on purpose (int3, into).
            let dpl = if v == 3 || v == 4 { 3 } else { 0 };
            // NMI, #DF and #MC run on their own stack.
            let ist = if v == 2 || v == 8 || v == 18 { 1 } else { 0 };
            t.idt[v] = gate(*stub, dpl, ist);
        }
        for (v, stub) in entry::interrupt_stubs() {
            t.idt[v as usize] = gate(stub, 0, 0);
        }

        let gdtr = DescriptorPointer {
            limit: (size_of::<[u64; GDT_ENTRIES]>() - 1) as u16,
            base: t.gdt.as_ptr() as u64,
        };
        let idtr = DescriptorPointer {
            limit: (size_of::<[IdtEntry; 256]>() - 1) as u16,
            base: t.idt.as_ptr() as u64,
        };
        asm!(
            "lgdt [{gdtr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            // Null DS/ES/FS/GS (fine in 64-bit mode): a DPL-0 selector left there would
            // be nulled by every IRETQ to the guest's ring 3, and QEMU clears the segment
            // base as it does so, wiping the guest's FS/GS bases.
            "mov ds, {null:e}",
            "mov es, {null:e}",
            "mov fs, {null:e}",
            "mov gs, {null:e}",
            "mov ss, {ds:e}",
            "ltr {tss:x}",
            "lidt [{idtr}]",
            gdtr = in(reg) &gdtr,
            idtr = in(reg) &idtr,
            cs = in(reg) SHIM_CS as u64,
            ds = in(reg) SHIM_DS as u32,
            null = in(reg) 0u32,
            tss = in(reg) TSS_SEL,
            tmp = out(reg) _,
        );

        // SYSRET to 64-bit ring 3 uses STAR[63:48] + 16 for CS and + 8 for SS: with
        // RING3_CS32 there, those are exactly FLAT_RING3_CS64 and FLAT_RING3_SS64.
        Msr::new(MSR_STAR)
            .write(((hypervisor_shim::trap::RING3_CS32 as u64) << 48) | ((SHIM_CS as u64) << 32));
        Msr::new(MSR_LSTAR).write(entry::syscall_entry_addr());
        Msr::new(MSR_CSTAR).write(entry::cstar_entry_addr());
        Msr::new(MSR_FMASK).write(SYSCALL_FMASK);

        // Mask the legacy PICs: the shim takes no device interrupts yet.
        x86_64::instructions::port::Port::<u8>::new(0x21).write(0xff);
        x86_64::instructions::port::Port::<u8>::new(0xa1).write(0xff);
    }
}

const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Loads a guest's FS/GS bases (the shadow GS base being what the guest's `swapgs`
/// semantics put there: the other mode's) and its virtual CR0.TS. Called only when they
/// changed (`Hypervisor::take_guest_cpu`), so every value is written.
pub fn load_guest_state(g: &GuestCpu) {
    // SAFETY: the lib hands out canonical bases only (`GuestCpu::from`), so WRMSR cannot
    // fault; the shim does not use FS, GS or the FPU itself.
    unsafe {
        Msr::new(MSR_FS_BASE).write(g.fs_base);
        Msr::new(MSR_GS_BASE).write(g.gs_base);
        Msr::new(MSR_KERNEL_GS_BASE).write(g.gs_shadow);
        if g.cr0_ts {
            asm!("mov {t}, cr0", "or {t}, 8", "mov cr0, {t}", t = out(reg) _, options(nostack));
        } else {
            asm!("clts", options(nostack));
        }
    }
}

/// The host's CPUID leaf (input to the guests' CPUID policy).
pub fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Switches to the page tables rooted at machine frame `mfn`.
///
/// # Safety
/// The table must map the shim (the direct map slot) exactly as the boot tables do.
pub unsafe fn load_cr3(mfn: u64) {
    // SAFETY: per the caller's contract the shim stays mapped.
    unsafe { asm!("mov cr3, {}", in(reg) mfn << 12, options(nostack)) };
}

/// Switches to the boot page tables, which map only the shim.
pub fn load_idle_tables() {
    // SAFETY: the boot tables map the shim's direct map exactly as at boot.
    unsafe { load_cr3(super::boot::boot_l4_mfn()) };
}

/// Waits for an interrupt with interrupts enabled just for the wait (`sti; hlt` is
/// atomic: the interrupt cannot slip in between), and returns with them off again.
pub fn idle_until_interrupt() {
    // SAFETY: the only interrupts are the APIC timer's, COM1's and the devices', whose
    // ring-0 handler acknowledges and returns (`trap_entry`), touching no shim state but
    // the I/O APIC and the atomics of `devices`.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

/// Swaps the x87/SSE registers: saves them into `save` (if any), loads `load`.
///
/// # Safety
/// Both areas must be valid, 16-byte aligned FXSAVE areas (the domains' `fpu`).
pub unsafe fn switch_fpu(save: Option<*mut FpuArea>, load: *const FpuArea) {
    // SAFETY: CR0.TS is cleared first so FXSAVE/FXRSTOR cannot #NM in the shim; the
    // caller loads the guest's virtual TS afterwards. The areas are valid per contract.
    unsafe {
        asm!("clts", options(nomem, nostack));
        if let Some(p) = save {
            asm!("fxsave64 [{}]", in(reg) p, options(nostack));
        }
        asm!("fxrstor64 [{}]", in(reg) load, options(nostack));
    }
}

/// Stops the machine for good (interrupts off, hlt forever).
pub fn halt() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Where the CPU pushes the frame of the next exception or interrupt from ring 3.
pub fn set_rsp0(top: u64) {
    // SAFETY: single CPU, interrupts off; the TSS is read by the CPU only on an entry.
    unsafe { (*core::ptr::addr_of_mut!(TABLES)).tss.rsp[0] = top };
}
