//! RDMSR/WRMSR from a PV guest kernel (Xen's `read_msr`/`write_msr` of
//! xen/arch/x86/pv/emul-priv-op.c and `guest_rdmsr`/`guest_wrmsr` of
//! xen/arch/x86/msr.c). Since Xen 4.15 an MSR that is not on the list raises #GP in the
//! guest; so does every MSR here that the shim cannot honour.

use crate::state::vcpu::Vcpu;

pub const MSR_FS_BASE: u32 = 0xc000_0100;
pub const MSR_GS_BASE: u32 = 0xc000_0101;
pub const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_IA32_PLATFORM_ID: u32 = 0x17;
/// `MSR_AMD_PATCHLEVEL` / Intel's `BIOS_SIGN_ID`: the microcode revision.
pub const MSR_PATCHLEVEL: u32 = 0x8b;
pub const MSR_INTEL_PLATFORM_INFO: u32 = 0xce;
pub const MSR_INTEL_MISC_FEATURES_ENABLES: u32 = 0x140;
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
pub const MSR_APIC_BASE: u32 = 0x1b;

/// APIC_BASE as Xen's PV `read_msr` fakes it ("Linux PV guests will attempt to read
/// APIC_BASE"): the default base, enabled, and BSP (the shim's guests have vCPU 0
/// only).
pub const GUEST_APIC_BASE: u64 = 0xfee0_0000 | 1 << 11 | 1 << 8;

/// EFER as a 64-bit PV guest sees it: SCE, LME, LMA, NXE.
pub const GUEST_EFER: u64 = 1 << 0 | 1 << 8 | 1 << 10 | 1 << 11;
/// `guest_misc_enable`: fast strings; BTS and PEBS unavailable; xTPR disabled.
pub const GUEST_MISC_ENABLE: u64 = 1 << 0 | 1 << 11 | 1 << 12 | 1 << 23;

/// The value of `msr`, or `None` for #GP.
pub fn read(v: &Vcpu, msr: u32) -> Option<u64> {
    Some(match msr {
        MSR_FS_BASE => v.fs_base,
        MSR_GS_BASE => v.gs_bases().0,
        MSR_SHADOW_GS_BASE => v.gs_bases().1,
        MSR_EFER => GUEST_EFER,
        MSR_APIC_BASE => GUEST_APIC_BASE,
        MSR_IA32_MISC_ENABLE => GUEST_MISC_ENABLE,
        // No microcode revision, platform ID or platform info (hence no CPUID faulting
        // offered to the guest) and no misc features enabled.
        MSR_IA32_PLATFORM_ID
        | MSR_PATCHLEVEL
        | MSR_INTEL_PLATFORM_INFO
        | MSR_INTEL_MISC_FEATURES_ENABLES => 0,
        _ => return None,
    })
}

/// Writes `msr`; `false` for #GP.
pub fn write(v: &mut Vcpu, msr: u32, val: u64) -> bool {
    let canonical = crate::paging::is_canonical(val);
    match msr {
        MSR_FS_BASE if canonical => (v.fs_base, v.cpu_dirty) = (val, true),
        // Only the guest kernel gets here: GS_BASE is its own, the shadow the user's.
        MSR_GS_BASE if canonical => (v.gs_base_kernel, v.cpu_dirty) = (val, true),
        MSR_SHADOW_GS_BASE if canonical => (v.gs_base_user, v.cpu_dirty) = (val, true),
        // Xen refuses a change but lets the current value be written back (Linux
        // depends on it).
        MSR_EFER if val == GUEST_EFER => {}
        // Writing the microcode revision (the Intel "write 0, CPUID, read" dance) is
        // ignored, as Xen does.
        MSR_PATCHLEVEL => {}
        MSR_IA32_MISC_ENABLE => {
            if val != GUEST_MISC_ENABLE {
                log::warn!("guest attempted WRMSR {msr:#x} to {val:#x}: ignored");
            }
        }
        // CPUID faulting is not offered: only 0 may be written.
        MSR_INTEL_MISC_FEATURES_ENABLES if val == 0 => {}
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let mut v = Vcpu::new();
        assert!(write(&mut v, MSR_FS_BASE, 0x7000));
        assert!(write(&mut v, MSR_GS_BASE, 0xffff_8800_0000_0000));
        assert!(write(&mut v, MSR_SHADOW_GS_BASE, 0x1234));
        assert_eq!(read(&v, MSR_FS_BASE), Some(0x7000));
        assert_eq!(read(&v, MSR_GS_BASE), Some(0xffff_8800_0000_0000));
        assert_eq!(read(&v, MSR_SHADOW_GS_BASE), Some(0x1234));
        assert_eq!(
            (v.gs_base_kernel, v.gs_base_user),
            (0xffff_8800_0000_0000, 0x1234)
        );
        assert_eq!(read(&v, MSR_EFER), Some(0xd01));
        assert!(
            write(&mut v, MSR_EFER, GUEST_EFER),
            "EFER written back unchanged"
        );
        assert_eq!(read(&v, MSR_APIC_BASE), Some(0xfee0_0900));
        assert!(write(&mut v, MSR_PATCHLEVEL, 0));
        assert!(write(&mut v, MSR_INTEL_MISC_FEATURES_ENABLES, 0));
        assert!(!write(&mut v, MSR_INTEL_MISC_FEATURES_ENABLES, 1));
    }

    #[test]
    fn everything_else_is_gp() {
        let mut v = Vcpu::new();
        assert!(
            !write(&mut v, MSR_FS_BASE, 0x8000_0000_0000_0000),
            "non-canonical"
        );
        assert_eq!(v.fs_base, 0);
        // APIC_BASE reads (above) but is not writable, as in Xen.
        assert!(!write(&mut v, MSR_APIC_BASE, GUEST_APIC_BASE));
        for msr in [
            0x10,
            0x277,
            0x4000_0000,
            0xc000_0081,
            0xc000_0082,
            0xc000_0103,
            0x48,
        ] {
            assert_eq!(read(&v, msr), None, "{msr:#x}");
            assert!(!write(&mut v, msr, 0), "{msr:#x}");
        }
        assert!(
            !write(&mut v, MSR_EFER, GUEST_EFER & !1),
            "EFER may not change"
        );
    }
}
