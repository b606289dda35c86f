//! The CPUID policy a PV guest sees: the host's leaves filtered through a fixed
//! allow-list of features the shim can honour, plus Xen's hypervisor leaves at
//! `0x40000000` (`arch-x86/cpuid.h`; Xen's `cpuid_hypervisor_leaves`). A guest reaches it
//! through the forced-emulation prefix `ud2; .ascii "xen"; cpuid` (or a plain CPUID when
//! the CPU faults CPUID in ring 3).
//!
//! The policy is computed once, from the host's raw leaves, by a pure function: the same
//! host gives the same policy, and features the shim cannot support for a ring-3 PV
//! kernel (VMX, x2APIC, XSAVE/AVX state the shim does not enable, PCID, SMEP/SMAP,
//! FSGSBASE, superpages, SYSENTER, RDTSCP, performance counters...) are never shown.

use alloc::vec::Vec;

use crate::version::VERSION;

pub type Regs = [u32; 4]; // eax, ebx, ecx, edx

const HYPERVISOR_BASE: u32 = xen_sys::XEN_CPUID_FIRST_LEAF;
const MAX_BASIC: u32 = 0xd;
const MAX_EXTENDED: u32 = 0x8000_0008;

/// Leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3, CX16, SSE4.1, SSE4.2, MOVBE, POPCNT, AES, RDRAND.
const L1_ECX: u32 =
    1 << 0 | 1 << 1 | 1 << 9 | 1 << 13 | 1 << 19 | 1 << 20 | 1 << 22 | 1 << 23 | 1 << 25 | 1 << 30;
/// Leaf 1 ECX bit 31: "running on a hypervisor".
const L1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: FPU, DE, TSC, MSR, PAE, CX8, CMOV, CLFLUSH, MMX, FXSR, SSE, SSE2.
const L1_EDX: u32 = 1 << 0
    | 1 << 2
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 8
    | 1 << 15
    | 1 << 19
    | 1 << 23
    | 1 << 24
    | 1 << 25
    | 1 << 26;
/// Leaf 7.0 EBX: BMI1, BMI2, ERMS, ADX, CLFLUSHOPT, SHA.
const L7_EBX: u32 = 1 << 3 | 1 << 8 | 1 << 9 | 1 << 19 | 1 << 23 | 1 << 29;
/// Leaf 0x80000001 ECX: LAHF_LM, ABM, SSE4A, MISALIGNSSE, PREFETCHW.
const E1_ECX: u32 = 1 << 0 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8;
/// Leaf 0x80000001 EDX: SYSCALL, NX, MMXEXT, LM, 3DNOWEXT, 3DNOW, plus AMD's copies of
/// the leaf-1 bits allowed above.
const E1_EDX: u32 =
    1 << 11 | 1 << 20 | 1 << 22 | 1 << 29 | 1 << 30 | 1 << 31 | (L1_EDX & 0x0183_f3ff);

/// A guest's CPUID answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidPolicy {
    /// (leaf, subleaf or `XEN_CPUID_NO_SUBLEAF`, registers), sorted.
    leaves: Vec<(u32, u32, Regs)>,
}

const ANY: u32 = xen_sys::XEN_CPUID_NO_SUBLEAF;

impl CpuidPolicy {
    /// Filters the host's leaves (`host(leaf, subleaf)`, as the CPUID instruction answers).
    /// `max_mfn` is the highest machine frame (leaf `0x40000005` EBX: machine address
    /// width).
    pub fn from_host(host: impl Fn(u32, u32) -> Regs, max_mfn: u64) -> Self {
        let mut leaves = Vec::new();
        let h0 = host(0, 0);
        let max_basic = h0[0].min(MAX_BASIC);
        leaves.push((0, ANY, [max_basic, h0[1], h0[2], h0[3]]));
        for leaf in 1..=max_basic {
            let h = host(leaf, 0);
            match leaf {
                // Family/model/stepping; CLFLUSH line size; APIC ID 0, no HTT.
                1 => leaves.push((
                    1,
                    ANY,
                    [
                        h[0],
                        h[1] & 0xffff,
                        h[2] & L1_ECX | L1_ECX_HYPERVISOR,
                        h[3] & L1_EDX,
                    ],
                )),
                // Cache descriptors (leaf 2) and cache parameters (leaf 4, without the
                // core/thread counts of the host's topology).
                2 => leaves.push((2, ANY, h)),
                4 => {
                    for sub in 0..8 {
                        let c = host(4, sub);
                        if c[0] & 0x1f == 0 {
                            break;
                        }
                        leaves.push((4, sub, [c[0] & 0x3fff, c[1], c[2], c[3]]));
                    }
                }
                7 => leaves.push((7, 0, [0, h[1] & L7_EBX, 0, 0])),
                // Everything else (MONITOR, power, perf counters, topology, XSAVE) hidden.
                _ => {}
            }
        }
        let e0 = host(0x8000_0000, 0);
        let max_ext = if e0[0] >= 0x8000_0000 {
            e0[0].min(MAX_EXTENDED)
        } else {
            0x8000_0000
        };
        leaves.push((0x8000_0000, ANY, [max_ext, e0[1], e0[2], e0[3]]));
        for leaf in 0x8000_0001..=max_ext {
            let h = host(leaf, 0);
            let regs = match leaf {
                0x8000_0001 => [h[0], 0, h[2] & E1_ECX, h[3] & E1_EDX],
                // Brand string, L1/L2 cache information.
                0x8000_0002..=0x8000_0006 => h,
                // Physical and virtual address widths only.
                0x8000_0008 => [h[0] & 0xffff, 0, 0, 0],
                _ => continue,
            };
            leaves.push((leaf, ANY, regs));
        }
        let limit = xen_sys::XEN_CPUID_MAX_NUM_LEAVES;
        leaves.push((
            HYPERVISOR_BASE,
            ANY,
            [
                HYPERVISOR_BASE + limit,
                xen_sys::XEN_CPUID_SIGNATURE_EBX,
                xen_sys::XEN_CPUID_SIGNATURE_ECX,
                xen_sys::XEN_CPUID_SIGNATURE_EDX,
            ],
        ));
        leaves.push((
            HYPERVISOR_BASE + 1,
            ANY,
            [VERSION.0 << 16 | VERSION.1, 0, 0, 0],
        ));
        // One hypercall page, installed through MSR 0x40000000 (see `msr.rs`). The
        // MMU_PT_UPDATE_PRESERVE_AD feature is not claimed until mmu_update honours it.
        leaves.push((HYPERVISOR_BASE + 2, ANY, [1, HYPERVISOR_BASE, 0, 0]));
        // Leaf 5 (PV): machine address width.
        let width = 64 - max_mfn.leading_zeros() + crate::machine::PAGE_SHIFT;
        leaves.push((HYPERVISOR_BASE + 5, 0, [0, width, 0, 0]));
        leaves.sort_by_key(|&(l, s, _)| (l, s));
        CpuidPolicy { leaves }
    }

    /// What CPUID answers for `leaf`/`subleaf`; zeros for anything not in the policy
    /// (like a real CPU above its maximum leaf, minus the Intel quirk of repeating the
    /// highest basic leaf).
    pub fn lookup(&self, leaf: u32, subleaf: u32) -> Regs {
        self.leaves
            .iter()
            .find(|&&(l, s, _)| l == leaf && (s == ANY || s == subleaf))
            .map(|&(_, _, r)| r)
            .unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use crate::testing::cpuid::greedy_host;

    #[test]
    fn hypervisor_leaves_are_xens() {
        let p = CpuidPolicy::from_host(greedy_host, 0xfffff);
        let sig = p.lookup(0x4000_0000, 0);
        assert_eq!(sig[0], 0x4000_0005);
        let mut s = [0u8; 12];
        for (i, r) in sig[1..].iter().enumerate() {
            s[i * 4..i * 4 + 4].copy_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&s, b"XenVMMXenVMM");
        assert_eq!(p.lookup(0x4000_0001, 0), [0x0004_0011, 0, 0, 0]);
        assert_eq!(p.lookup(0x4000_0002, 0), [1, 0x4000_0000, 0, 0]);
        assert_eq!(p.lookup(0x4000_0005, 0)[1], 32); // 2^20 frames = 32-bit addresses
        assert_eq!(p.lookup(0x4000_0006, 0), [0; 4]);
    }

    #[test]
    fn features_are_filtered_and_the_policy_is_stable() {
        let p = CpuidPolicy::from_host(greedy_host, 0x1000);
        assert_eq!(p, CpuidPolicy::from_host(greedy_host, 0x1000));
        assert_eq!(p.lookup(0, 0)[0], MAX_BASIC);
        let l1 = p.lookup(1, 0);
        assert_eq!(l1[1], 0xffff, "APIC ID and logical count hidden");
        assert_eq!(l1[2], L1_ECX | L1_ECX_HYPERVISOR);
        assert_eq!(
            l1[2] & (1 << 5 | 1 << 21 | 1 << 26 | 1 << 27 | 1 << 28),
            0,
            "no VMX, x2APIC, XSAVE, AVX"
        );
        assert_eq!(l1[3], L1_EDX);
        assert_eq!(
            l1[3] & (1 << 3 | 1 << 9 | 1 << 11 | 1 << 13),
            0,
            "no PSE, APIC, SEP, PGE"
        );
        assert_eq!(p.lookup(7, 0), [0, L7_EBX, 0, 0]);
        assert_eq!(p.lookup(7, 1), [0; 4]);
        assert_eq!(p.lookup(0xd, 0), [0; 4]);
        assert_eq!(p.lookup(4, 1), [0x4122 & 0x3fff, 1, 2, 3]);
        assert_eq!(p.lookup(4, 3), [0; 4]);
        assert_eq!(p.lookup(0x8000_0000, 0)[0], MAX_EXTENDED);
        let e1 = p.lookup(0x8000_0001, 0);
        assert_eq!(e1[3] & (1 << 27 | 1 << 26), 0, "no RDTSCP, no 1G pages");
        assert_ne!(e1[3] & (1 << 29), 0, "long mode");
        assert_eq!(p.lookup(0x8000_0008, 0), [0x3030, 0, 0, 0]);
        assert_eq!(p.lookup(0x8000_0021, 0), [0; 4]);
    }

    #[test]
    fn a_small_host_keeps_its_limits() {
        let p = CpuidPolicy::from_host(|l, _| if l == 0 { [1, 0, 0, 0] } else { [0; 4] }, 1);
        assert_eq!(p.lookup(0, 0)[0], 1);
        assert_eq!(p.lookup(0x8000_0000, 0)[0], 0x8000_0000);
        assert_eq!(p.lookup(7, 0), [0; 4]);
        assert_eq!(p.lookup(1, 0)[2], L1_ECX_HYPERVISOR);
    }
}
