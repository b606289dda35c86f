//! The ABI's structs as values: how each bindgen struct of `xen_sys` that crosses
//! between domains (a hypercall argument, a ring entry) is decoded from and encoded
//! into its bytes (little-endian, the C layout's field offsets), in safe code.
//!
//! [`FromGuest`] and [`ToGuest`] are implemented for every struct listed at the end of
//! this file by a macro that goes field by field with the bindings' own offsets; a
//! struct literal lists every field, so none is left out. A union keeps its bytes in a
//! variant as large as itself; its other variants cannot be read without `unsafe`
//! (which the crate forbids), so code that needs one reads it from guest memory at the
//! union's own address.

use core::mem::size_of;

use xen_sys::tools::{
    __guest_handle_xen_domctl_getdomaininfo_t, xen_arch_domainconfig, xen_domctl,
    xen_domctl__bindgen_ty_1, xen_domctl_getdomaininfo, xen_sysctl, xen_sysctl__bindgen_ty_1,
    xen_sysctl_getdomaininfolist,
};
use xen_sys::*;

/// The largest value copied at once (bytes; `xen_commandline_t`): copies go through a
/// buffer on the stack. Checked at compile time for every type copied.
pub const MAX_SIZE: usize = 1024;

/// A value decoded from its bytes in guest memory, in the ABI's layout
/// (little-endian, the C struct's field offsets).
pub trait FromGuest: Sized {
    /// Decodes a value from the first `size_of::<Self>()` bytes of `b`.
    fn decode(b: &[u8]) -> Self;
}

/// A value encoded into guest memory in the ABI's layout. Padding bytes are left as
/// the buffer had them (the copies encode into a zeroed buffer: zeros), so a struct
/// with padding is written whole only where the guest's padding does not matter (an
/// output struct); the shim's `copy_field_to_guest!` writes one field alone.
pub trait ToGuest: FromGuest {
    /// Encodes into the first `size_of::<Self>()` bytes of `b`.
    fn encode(&self, b: &mut [u8]);
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl FromGuest for $t {
            fn decode(b: &[u8]) -> Self {
                let mut a = [0; size_of::<$t>()];
                a.copy_from_slice(&b[..size_of::<$t>()]);
                <$t>::from_le_bytes(a)
            }
        }
        impl ToGuest for $t {
            fn encode(&self, b: &mut [u8]) {
                b[..size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
integers!(u8, u16, u32, u64, i8, i16, i32, i64);

impl<T: FromGuest, const N: usize> FromGuest for [T; N] {
    fn decode(b: &[u8]) -> Self {
        core::array::from_fn(|i| T::decode(&b[i * size_of::<T>()..]))
    }
}

impl<T: ToGuest, const N: usize> ToGuest for [T; N] {
    fn encode(&self, b: &mut [u8]) {
        for (i, v) in self.iter().enumerate() {
            v.encode(&mut b[i * size_of::<T>()..]);
        }
    }
}

/// A guest handle's pointer is a guest virtual address: the shim turns it back into a
/// `u64` (`as u64`) and reaches it only through [`GuestMemory`], never dereferences it.
impl<T> FromGuest for *mut T {
    fn decode(b: &[u8]) -> Self {
        u64::decode(b) as usize as *mut T
    }
}

impl<T> FromGuest for *const T {
    fn decode(b: &[u8]) -> Self {
        u64::decode(b) as usize as *const T
    }
}

/// Implements [`FromGuest`] for bindgen structs from their fields (a struct literal
/// lists every field, so none is left out); `to` also implements [`ToGuest`].
macro_rules! abi_structs {
    ($($dir:ident $t:ident { $($f:ident),* $(,)? })*) => {$(
        impl FromGuest for $t {
            fn decode(b: &[u8]) -> Self {
                $t { $($f: FromGuest::decode(&b[core::mem::offset_of!($t, $f)..])),* }
            }
        }
        abi_structs!(@$dir $t { $($f),* });
    )*};
    (@to $t:ident { $($f:ident),* }) => {
        impl ToGuest for $t {
            fn encode(&self, b: &mut [u8]) {
                $(self.$f.encode(&mut b[core::mem::offset_of!($t, $f)..]);)*
            }
        }
    };
    (@from $t:ident { $($f:ident),* }) => {};
}

/// Implements [`FromGuest`] for bindgen unions, keeping the bytes in `$v`, a variant
/// as large as the union. The other variants cannot be read without `unsafe`: code
/// that needs one reads it from the guest at the union's address ([`field_addr`]).
macro_rules! abi_unions {
    ($($t:ident as $v:ident),* $(,)?) => {$(
        impl FromGuest for $t {
            fn decode(b: &[u8]) -> Self {
                $t { $v: FromGuest::decode(b) }
            }
        }
    )*};
}

// The ABI structs that hypercalls copy, by header: `to` ones are written back whole.
abi_structs! {
    // event_channel.h
    to evtchn_alloc_unbound { dom, remote_dom, port }
    to evtchn_bind_interdomain { remote_dom, remote_port, local_port }
    to evtchn_bind_virq { virq, vcpu, port }
    to evtchn_bind_ipi { vcpu, port }
    to evtchn_bind_pirq { pirq, flags, port }
    to evtchn_close { port }
    to evtchn_send { port }
    to evtchn_unmask { port }
    to evtchn_bind_vcpu { port, vcpu }
    to evtchn_reset { dom }
    from evtchn_status { dom, port, status, vcpu, u }
    from evtchn_op { cmd, u }
    to evtchn_status__bindgen_ty_1__bindgen_ty_1 { dom }
    to evtchn_status__bindgen_ty_1__bindgen_ty_2 { dom, port }
    // grant_table.h
    to gnttab_map_grant_ref { host_addr, flags, ref_, dom, status, handle, dev_bus_addr }
    to gnttab_unmap_grant_ref { host_addr, dev_bus_addr, handle, status }
    to gnttab_unmap_and_replace { host_addr, new_addr, handle, status }
    from gnttab_copy { source, dest, len, flags, status }
    from gnttab_copy_gnttab_copy_ptr { u, domid, offset }
    from gnttab_setup_table { dom, nr_frames, status, frame_list }
    to gnttab_query_size { dom, nr_frames, max_nr_frames, status }
    to gnttab_get_version { dom, pad, version }
    to gnttab_set_version { version }
    from gnttab_get_status_frames { nr_frames, dom, status, frame_list }
    from __guest_handle_xen_pfn_t { p }
    from __guest_handle_uint64_t { p }
    // xen.h
    to mmu_update { ptr, val }
    from mmuext_op { cmd, arg1, arg2 }
    to multicall_entry { op, result, args }
    // arch-x86/xen-x86_64.h
    to iret_context { rax, r11, rcx, flags, rip, cs, rflags, rsp, ss }
    // memory.h
    from xen_memory_reservation { extent_start, nr_extents, extent_order, mem_flags, domid }
    from xen_memory_exchange { in_, out, nr_exchanged }
    to xen_add_to_physmap { domid, size, space, idx, gpfn }
    from xen_machphys_mfn_list { max_extents, extent_start, nr_extents }
    to xen_machphys_mapping { v_start, v_end, max_mfn }
    from xen_memory_map { nr_entries, buffer }
    from __guest_handle_void { p }
    // arch-x86/xen.h, callback.h
    from trap_info { vector, flags, cs, address }
    from callback_register { type_, flags, address }
    from callback_unregister { type_, _unused }
    // sched.h
    from sched_poll { ports, nr_ports, timeout }
    from __guest_handle_evtchn_port_t { p }
    from sched_shutdown { reason }
    from sched_remote_shutdown { domain_id, reason }
    // vcpu.h
    from vcpu_set_singleshot_timer { timeout_abs_ns, flags }
    from vcpu_set_periodic_timer { period_ns }
    from vcpu_register_vcpu_info { mfn, offset, rsvd }
    from vcpu_register_runstate_memory_area { addr }
    to vcpu_runstate_info { state, state_entry_time, time }
    // physdev.h
    from physdev_set_iopl { iopl }
    to physdev_map_pirq { domid, type_, index, pirq, bus, devfn, entry_nr, table_base }
    to physdev_unmap_pirq { domid, pirq }
    to physdev_eoi { irq }
    to physdev_irq_status_query { irq, flags }
    // hvm/params.h
    to xen_hvm_param { domid, pad, index, value }
    // version.h
    to xen_feature_info { submap_idx, submap }
    to xen_compile_info { compiler, compile_by, compile_domain, compile_date }
    to xen_platform_parameters { virt_start }
    // io/blkif.h
    to blkif_request { operation, nr_segments, handle, id, sector_number, seg }
    to blkif_request_segment { gref, first_sect, last_sect }
    to blkif_request_indirect {
        operation, indirect_op, nr_segments, id, sector_number, handle, indirect_grefs,
    }
    to blkif_request_discard { operation, flag, handle, id, sector_number, nr_sectors }
    to blkif_response { id, operation, status }
    // io/netif.h
    to netif_tx_request { gref, offset, flags, id, size }
    to netif_tx_response { id, status }
    to netif_rx_request { id, pad, gref }
    to netif_rx_response { id, offset, flags, status }
    // domctl.h, sysctl.h (the tools view)
    from xen_domctl { cmd, interface_version, domain, _pad, u }
    from xen_sysctl { cmd, interface_version, u }
    to xen_domctl_getdomaininfo {
        domain, pad1, flags, tot_pages, max_pages, outstanding_pages, shr_pages,
        paged_pages, shared_info_frame, cpu_time, nr_online_vcpus, max_vcpu_id, ssidref,
        handle, cpupool, gpaddr_bits, pad2, arch_config,
    }
    to xen_arch_domainconfig { emulation_flags, misc_flags }
    from xen_sysctl_getdomaininfolist { first_domain, max_domains, buffer, num_domains }
    from __guest_handle_xen_domctl_getdomaininfo_t { p }
}

abi_unions! {
    evtchn_status__bindgen_ty_1 as interdomain,
    evtchn_op__bindgen_ty_1 as status,
    gnttab_copy_gnttab_copy_ptr__bindgen_ty_1 as gmfn,
    mmuext_op__bindgen_ty_1 as mfn,
    mmuext_op__bindgen_ty_2 as src_mfn,
    vcpu_register_runstate_memory_area__bindgen_ty_1 as p,
    xen_domctl__bindgen_ty_1 as pad,
    xen_sysctl__bindgen_ty_1 as pad,
}
