//! `xen_version` (`version.h`): every sub-op a guest probes at boot.

use core::mem::{offset_of, size_of};
use xen_sys::*;

use super::env::{err, Env};
use crate::domain::Domain;
use crate::machine::Machine;
use crate::version::VERSION_WORD;

const EXTRAVERSION: &str = ".0-shim";
const CAPABILITIES: &str = "xen-3.0-x86_64 ";

/// Feature bits (`features.h`) for submap 0, as Xen 4.17 reports them to a 64-bit PV
/// domain, less `memory_op_vnode_supported` (no vNUMA). `gnttab_map_avail_bits` is a
/// promise about `GNTTABOP_map_grant_ref`, which answers -ENOSYS until grant tables
/// exist (issue 5, which must keep it); Linux refuses to boot without the bit.
pub fn features(dom: &Domain, submap: u32) -> u32 {
    if submap != 0 {
        return 0;
    }
    let mut f = 1 << XENFEAT_mmu_pt_update_preserve_ad | 1 << XENFEAT_gnttab_map_avail_bits;
    if dom.vcpu.vm_assist(VMASST_TYPE_pae_extended_cr3) {
        f |= 1 << XENFEAT_pae_pgdir_above_4gb;
    }
    if dom.privileged {
        f |= 1 << XENFEAT_dom0;
    }
    f
}

/// Copies `bytes` to the guest at `va`: 0, or -EFAULT.
fn copy_out<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &Domain, va: u64, bytes: &[u8]) -> i64 {
    match env.guest(dom).write(va, bytes) {
        Ok(()) => 0,
        Err(_) => err(XEN_EFAULT),
    }
}

/// Puts `s`, truncated and NUL-padded, in `buf` (a fixed-size C char array).
fn fill_str(buf: &mut [u8], s: &str) {
    let n = s.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
    buf[n..].fill(0);
}

/// Writes `s` NUL-padded into a fixed-size guest char array of `size` bytes.
fn put_str<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    va: u64,
    s: &str,
    size: usize,
) -> i64 {
    let mut buf = alloc::vec![0u8; size];
    fill_str(&mut buf, s);
    copy_out(env, dom, va, &buf)
}

/// `XENVER_version` is the guests' null hypercall (Linux forces pending events with
/// it): the shim answers it before any other set-up (`Hypervisor::handle`).
#[inline]
pub fn is_null_hypercall(nr: u64, cmd: u64) -> bool {
    nr == __HYPERVISOR_xen_version as u64 && cmd == XENVER_version as u64
}

/// Every sub-op; `XENVER_version` itself normally never gets here (see
/// [`is_null_hypercall`]) except inside a multicall.
#[inline(never)]
pub fn xen_version<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    cmd: u64,
    arg: u64,
) -> i64 {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        XENVER_version => VERSION_WORD,
        XENVER_extraversion => {
            put_str(env, dom, arg, EXTRAVERSION, size_of::<xen_extraversion_t>())
        }
        XENVER_compile_info => {
            let mut info = alloc::vec![0u8; size_of::<xen_compile_info>()];
            // Field bounds come from the bindings' offsets (the fields are char arrays).
            let fields = [
                (offset_of!(xen_compile_info, compiler), "rustc"),
                (offset_of!(xen_compile_info, compile_by), "hypervisor-shim"),
                (offset_of!(xen_compile_info, compile_domain), ""),
                (offset_of!(xen_compile_info, compile_date), ""),
            ];
            for (i, (start, s)) in fields.iter().enumerate() {
                let end = fields.get(i + 1).map_or(info.len(), |f| f.0);
                fill_str(&mut info[*start..end], s);
            }
            copy_out(env, dom, arg, &info)
        }
        XENVER_capabilities => put_str(
            env,
            dom,
            arg,
            CAPABILITIES,
            size_of::<xen_capabilities_info_t>(),
        ),
        XENVER_changeset => put_str(env, dom, arg, "", size_of::<xen_changeset_info_t>()),
        XENVER_platform_parameters => {
            let v = HYPERVISOR_VIRT_START.to_le_bytes();
            let va = arg.wrapping_add(offset_of!(xen_platform_parameters, virt_start) as u64);
            copy_out(env, dom, va, &v)
        }
        XENVER_get_features => {
            let idx_va = arg.wrapping_add(offset_of!(xen_feature_info, submap_idx) as u64);
            let map_va = arg.wrapping_add(offset_of!(xen_feature_info, submap) as u64);
            let Ok(idx) = env.guest(dom).read_u32(idx_va) else {
                return err(XEN_EFAULT);
            };
            if idx >= XENFEAT_NR_SUBMAPS {
                return err(XEN_EINVAL);
            }
            match env
                .guest(dom)
                .write(map_va, &features(dom, idx).to_le_bytes())
            {
                Ok(()) => 0,
                Err(_) => err(XEN_EFAULT),
            }
        }
        XENVER_pagesize => 4096,
        XENVER_guest_handle => {
            let mut handle = [0u8; size_of::<xen_domain_handle_t>()];
            handle[..2].copy_from_slice(&dom.id.to_le_bytes());
            copy_out(env, dom, arg, &handle)
        }
        // The hypervisor's command line and build id are for the privileged domain only.
        XENVER_commandline if !dom.privileged => err(XEN_EPERM),
        XENVER_commandline => {
            let cmdline = env.cmdline;
            put_str(env, dom, arg, cmdline, size_of::<xen_commandline_t>())
        }
        XENVER_build_id if !dom.privileged => err(XEN_EPERM),
        XENVER_build_id => err(XEN_ENODATA),
        _ => err(XEN_ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{World, SCRATCH};
    use super::*;

    fn ver(w: &mut World, cmd: u32, arg: u64) -> i64 {
        w.call(__HYPERVISOR_xen_version, &[cmd as u64, arg])
    }

    fn cstr(bytes: &[u8]) -> &[u8] {
        &bytes[..bytes.iter().position(|&b| b == 0).unwrap()]
    }

    #[test]
    fn version_strings_and_parameters() {
        let mut w = World::new(true);
        assert_eq!(ver(&mut w, XENVER_version, 0), (4 << 16) | 17);
        assert_eq!(ver(&mut w, XENVER_extraversion, SCRATCH), 0);
        assert_eq!(cstr(&w.peek(SCRATCH, 16)), b".0-shim");
        assert_eq!(ver(&mut w, XENVER_capabilities, SCRATCH), 0);
        assert_eq!(cstr(&w.peek(SCRATCH, 1024)), b"xen-3.0-x86_64 ");
        assert_eq!(ver(&mut w, XENVER_compile_info, SCRATCH), 0);
        assert_eq!(cstr(&w.peek(SCRATCH, 64)), b"rustc");
        assert_eq!(ver(&mut w, XENVER_changeset, SCRATCH), 0);
        assert_eq!(ver(&mut w, XENVER_platform_parameters, SCRATCH), 0);
        assert_eq!(w.peek(SCRATCH, 8), HYPERVISOR_VIRT_START.to_le_bytes());
        assert_eq!(ver(&mut w, XENVER_pagesize, 0), 4096);
        assert_eq!(ver(&mut w, XENVER_guest_handle, SCRATCH), 0);
        assert_eq!(ver(&mut w, XENVER_commandline, SCRATCH), 0);
        assert_eq!(cstr(&w.peek(SCRATCH, 1024)), b"dom0_mem=64M -- x");
        assert_eq!(ver(&mut w, XENVER_build_id, SCRATCH), err(XEN_ENODATA));
        assert_eq!(ver(&mut w, 99, SCRATCH), err(XEN_ENOSYS));
    }

    #[test]
    fn features_by_submap() {
        let mut w = World::new(true);
        w.poke(SCRATCH, &0u32.to_le_bytes());
        assert_eq!(ver(&mut w, XENVER_get_features, SCRATCH), 0);
        let preserve_ad =
            1u32 << XENFEAT_mmu_pt_update_preserve_ad | 1 << XENFEAT_gnttab_map_avail_bits;
        assert_eq!(
            w.peek(SCRATCH + 4, 4),
            (1u32 << XENFEAT_dom0 | preserve_ad).to_le_bytes()
        );
        w.poke(SCRATCH, &XENFEAT_NR_SUBMAPS.to_le_bytes());
        assert_eq!(ver(&mut w, XENVER_get_features, SCRATCH), err(XEN_EINVAL));
        let mut domu = World::new(false);
        domu.poke(SCRATCH, &0u32.to_le_bytes());
        assert_eq!(ver(&mut domu, XENVER_get_features, SCRATCH), 0);
        assert_eq!(domu.peek(SCRATCH + 4, 4), preserve_ad.to_le_bytes());
        domu.dom.vcpu.vm_assist |= 1 << VMASST_TYPE_pae_extended_cr3;
        assert_eq!(ver(&mut domu, XENVER_get_features, SCRATCH), 0);
        let pae = 1u32 << XENFEAT_pae_pgdir_above_4gb;
        assert_eq!(domu.peek(SCRATCH + 4, 4), (preserve_ad | pae).to_le_bytes());
    }

    #[test]
    fn privileged_subops_and_bad_buffers() {
        let mut w = World::new(false);
        assert_eq!(ver(&mut w, XENVER_commandline, SCRATCH), err(XEN_EPERM));
        assert_eq!(ver(&mut w, XENVER_build_id, SCRATCH), err(XEN_EPERM));
        for cmd in [
            XENVER_extraversion,
            XENVER_capabilities,
            XENVER_get_features,
            XENVER_compile_info,
        ] {
            assert_eq!(ver(&mut w, cmd, 0x10), err(XEN_EFAULT));
            assert_eq!(ver(&mut w, cmd, u64::MAX), err(XEN_EFAULT));
        }
    }
}
