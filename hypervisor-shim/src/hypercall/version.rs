//! `xen_version` (`version.h`): every sub-op a guest probes at boot.

use core::ffi::c_char;

use xen_sys::*;

use super::env::Env;
use super::error::Result;
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

/// `s` as a fixed-size C string: truncated, NUL-padded, always terminated.
fn c_str<const N: usize>(s: &str) -> [c_char; N] {
    let mut buf = [0; N];
    for (d, &b) in buf.iter_mut().zip(s.as_bytes()).take(N - 1) {
        *d = b as c_char;
    }
    buf
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
) -> Result<i64> {
    let c = u32::try_from(cmd).unwrap_or(u32::MAX);
    match c {
        XENVER_version => return Ok(VERSION_WORD),
        XENVER_pagesize => return Ok(4096),
        // The hypervisor's command line and build id are for the privileged domain only.
        XENVER_commandline | XENVER_build_id if !dom.privileged => return Err(XEN_EPERM.into()),
        XENVER_build_id => return Err(XEN_ENODATA.into()),
        XENVER_extraversion => {
            env.write::<xen_extraversion_t>(dom, arg, &c_str(EXTRAVERSION))?;
        }
        XENVER_compile_info => {
            let info = xen_compile_info {
                compiler: c_str("rustc"),
                compile_by: c_str("hypervisor-shim"),
                compile_domain: c_str(""),
                compile_date: c_str(""),
            };
            env.write(dom, arg, &info)?;
        }
        XENVER_capabilities => {
            env.write::<xen_capabilities_info_t>(dom, arg, &c_str(CAPABILITIES))?;
        }
        XENVER_changeset => env.write::<xen_changeset_info_t>(dom, arg, &c_str(""))?,
        XENVER_platform_parameters => {
            let p = xen_platform_parameters {
                virt_start: HYPERVISOR_VIRT_START,
            };
            env.write(dom, arg, &p)?;
        }
        XENVER_get_features => {
            let mut op: xen_feature_info = env.read(dom, arg)?;
            if op.submap_idx >= XENFEAT_NR_SUBMAPS {
                return Err(XEN_EINVAL.into());
            }
            op.submap = features(dom, op.submap_idx);
            env.write(dom, arg, &op)?;
        }
        XENVER_guest_handle => {
            let mut handle: xen_domain_handle_t = Default::default();
            handle[..2].copy_from_slice(&dom.id.to_le_bytes());
            env.write(dom, arg, &handle)?;
        }
        XENVER_commandline => {
            let cmdline: xen_commandline_t = c_str(env.cmdline);
            env.write(dom, arg, &cmdline)?;
        }
        _ => return Err(XEN_ENOSYS.into()),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::env::err;
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
