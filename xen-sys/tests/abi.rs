//! Hand-written checks of key x86_64 ABI facts, with the values computed from the Xen
//! public headers' definitions and documentation (not from the generated bindings).

use core::mem::{offset_of, size_of};
use xen_sys::*;

#[test]
fn interface_version_is_pinned() {
    assert_eq!(__XEN_INTERFACE_VERSION__, 0x0004_0e00);
    assert_eq!(__XEN_INTERFACE_VERSION__, __XEN_LATEST_INTERFACE_VERSION__);
}

#[test]
fn pv_boot_structures() {
    // 32 magic + 3 * 8 + store_evtchn/console/... + 1024 cmd_line + 2 * 8.
    assert_eq!(size_of::<start_info>(), 1168);
    assert_eq!(offset_of!(start_info, nr_pages), 32);
    assert_eq!(offset_of!(start_info, store_mfn), 56);
    assert_eq!(offset_of!(start_info, console), 72);
    assert_eq!(offset_of!(start_info, pt_base), 88);
    assert_eq!(offset_of!(start_info, mfn_list), 104);
    assert_eq!(offset_of!(start_info, cmd_line), 128);
    assert_eq!(offset_of!(start_info, first_p2m_pfn), 1152);
    assert_eq!(MAX_GUEST_CMDLINE, 1024);
}

#[test]
fn shared_info_and_vcpu_info() {
    assert_eq!(size_of::<vcpu_time_info>(), 32);
    assert_eq!(size_of::<vcpu_info>(), 64);
    assert_eq!(offset_of!(vcpu_info, evtchn_upcall_pending), 0);
    assert_eq!(offset_of!(vcpu_info, evtchn_upcall_mask), 1);
    assert_eq!(offset_of!(vcpu_info, evtchn_pending_sel), 8);
    assert_eq!(offset_of!(vcpu_info, arch), 16);
    assert_eq!(offset_of!(vcpu_info, time), 32);
    // 32 legacy vcpu_info, 64-word pending and mask bitmaps, wallclock, arch (6 words).
    assert_eq!(XEN_LEGACY_MAX_VCPUS, 32);
    assert_eq!(offset_of!(shared_info, evtchn_pending), 2048);
    assert_eq!(offset_of!(shared_info, evtchn_mask), 2560);
    assert_eq!(offset_of!(shared_info, wc_version), 3072);
    assert_eq!(offset_of!(shared_info, wc_sec_hi), 3084);
    assert_eq!(offset_of!(shared_info, arch), 3088);
    assert_eq!(size_of::<arch_shared_info>(), 48);
    assert_eq!(size_of::<shared_info>(), 3136);
}

#[test]
fn hypercall_argument_structures() {
    assert_eq!(size_of::<trap_info>(), 16);
    assert_eq!(offset_of!(trap_info, cs), 2);
    assert_eq!(offset_of!(trap_info, address), 8);
    assert_eq!(size_of::<mmu_update>(), 16);
    assert_eq!(size_of::<multicall_entry>(), 64);
}

#[test]
fn pvh_start_info() {
    assert_eq!(XEN_HVM_START_MAGIC_VALUE, 0x336e_c578);
    assert_eq!(size_of::<hvm_start_info>(), 56);
    assert_eq!(offset_of!(hvm_start_info, modlist_paddr), 16);
    assert_eq!(offset_of!(hvm_start_info, memmap_paddr), 40);
    assert_eq!(offset_of!(hvm_start_info, memmap_entries), 48);
    assert_eq!(size_of::<hvm_modlist_entry>(), 32);
    assert_eq!(size_of::<hvm_memmap_table_entry>(), 24);
    assert_eq!(offset_of!(hvm_memmap_table_entry, type_), 16);
}

#[test]
fn selectors_and_address_space() {
    assert_eq!(FLAT_KERNEL_CS64, 0xe033);
    assert_eq!(FLAT_KERNEL_SS64, 0xe02b);
    assert_eq!(FLAT_KERNEL_CS, FLAT_KERNEL_CS64);
    assert_eq!(FLAT_KERNEL_SS, FLAT_KERNEL_SS64);
    assert_eq!(FLAT_USER_CS, 0xe033);
    let m2p: u64 = MACH2PHYS_VIRT_START;
    assert_eq!(m2p, 0xffff_8000_0000_0000);
    assert_eq!(MACH2PHYS_VIRT_END, 0xffff_8040_0000_0000);
    assert_eq!(HYPERVISOR_VIRT_START, 0xffff_8000_0000_0000);
    assert_eq!(HYPERVISOR_VIRT_END, 0xffff_8800_0000_0000);
}

#[test]
fn constants_have_usable_types() {
    let self_: domid_t = DOMID_SELF;
    assert_eq!(self_, 0x7ff0);
    assert_eq!(DOMID_IO, 0x7ff1);
    let flags: core::ffi::c_ulong = UVMF_INVLPG | UVMF_ALL;
    assert_eq!(flags, 2 | 4);
    assert_eq!(__HYPERVISOR_console_io, 18);
    assert_eq!(__HYPERVISOR_sched_op, 29);
    assert_eq!(CONSOLEIO_write, 0);
    assert_eq!(SCHEDOP_shutdown, 2);
    assert_eq!(SHUTDOWN_crash, 3);
    assert_eq!(XENVER_get_features, 6);
    assert_eq!(XEN_ELFNOTE_ENTRY, 1);
    assert_eq!(XEN_ELFNOTE_HYPERCALL_PAGE, 2);
    assert_eq!(XEN_ELFNOTE_PHYS32_ENTRY, 18);
    assert_eq!(SIF_PRIVILEGED, 1);
    assert_eq!(SIF_INITDOMAIN, 2);
    assert_eq!(VIRQ_TIMER, 0);
    assert_eq!(GNTTABOP_map_grant_ref, 0);
    assert_eq!(XS_READ, 2);
    assert_eq!(XenbusStateConnected, 4);
    assert_eq!(XENFEAT_writable_page_tables, 0);
    assert_eq!(XENFEAT_auto_translated_physmap, 2);
    assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
}

#[test]
fn toolstack_domctl_and_sysctl() {
    use xen_sys::tools::*;
    // Xen 4.17's versions of the two unstable interfaces.
    assert_eq!(XEN_DOMCTL_INTERFACE_VERSION, 0x15);
    assert_eq!(XEN_SYSCTL_INTERFACE_VERSION, 0x15);
    assert_eq!(
        (
            XEN_DOMCTL_destroydomain,
            XEN_DOMCTL_pausedomain,
            XEN_DOMCTL_unpausedomain,
            XEN_DOMCTL_getdomaininfo
        ),
        (2, 3, 4, 5)
    );
    assert_eq!(XEN_SYSCTL_getdomaininfolist, 6);
    // cmd, interface_version, domain, 3 pad, then a 128-byte union.
    assert_eq!(offset_of!(xen_domctl, domain), 8);
    assert_eq!(offset_of!(xen_domctl, u), 16);
    assert_eq!(size_of::<xen_domctl>(), 16 + 128);
    // cmd, interface_version, then the union (8-aligned, 128 bytes).
    assert_eq!(offset_of!(xen_sysctl, u), 8);
    assert_eq!(size_of::<xen_sysctl>(), 8 + 128);
    // domid, pad, flags, seven uint64_aligned_t, nr_online_vcpus, max_vcpu_id,
    // ssidref, a 16-byte handle, cpupool, gpaddr_bits + 7 pad, x86 arch_config (2 * 4).
    assert_eq!(offset_of!(xen_domctl_getdomaininfo, flags), 4);
    assert_eq!(offset_of!(xen_domctl_getdomaininfo, tot_pages), 8);
    assert_eq!(offset_of!(xen_domctl_getdomaininfo, shared_info_frame), 48);
    assert_eq!(offset_of!(xen_domctl_getdomaininfo, cpu_time), 56);
    assert_eq!(offset_of!(xen_domctl_getdomaininfo, nr_online_vcpus), 64);
    assert_eq!(offset_of!(xen_domctl_getdomaininfo, handle), 76);
    assert_eq!(offset_of!(xen_domctl_getdomaininfo, arch_config), 104);
    assert_eq!(size_of::<xen_domctl_getdomaininfo>(), 112);
    assert_eq!(
        (XEN_DOMINF_dying, XEN_DOMINF_shutdown, XEN_DOMINF_paused),
        (1, 4, 8)
    );
    assert_eq!((XEN_DOMINF_blocked, XEN_DOMINF_running), (16, 32));
    assert_eq!(
        (XEN_DOMINF_shutdownshift, XEN_DOMINF_shutdownmask),
        (16, 255)
    );
    // first_domain, max_domains, a 64-bit guest handle, num_domains.
    assert_eq!(offset_of!(xen_sysctl_getdomaininfolist, buffer), 8);
    assert_eq!(offset_of!(xen_sysctl_getdomaininfolist, num_domains), 16);
}
