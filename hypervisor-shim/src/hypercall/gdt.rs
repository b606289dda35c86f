//! `set_gdt` and `update_descriptor` (`xen.h`; Xen's `do_set_gdt` and
//! `do_update_descriptor` in `xen/arch/x86/pv/descriptor-tables.c`): descriptor
//! frames get the segment-descriptor page type, so they cannot be writable while in
//! use, and every descriptor is checked ([`crate::mm::descriptor`]).
//!
//! The GDT is validated and recorded in the domain; the shim does not load guest
//! descriptors yet (guests run on the flat `FLAT_RING3_*` selectors of the shim's GDT).

use xen_sys::*;

use super::env::Env;
use super::error::Result;
use super::guest::element;
use crate::domain::Domain;
use crate::machine::{write_u64, Machine, PAGE_SHIFT};
use crate::mm::descriptor::check_descriptor;
use crate::mm::PageType;

/// Descriptors per frame.
const PER_FRAME: u64 = 512;

pub fn set_gdt<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    frame_list: u64,
    entries: u64,
) -> Result<i64> {
    let entries = entries as u32; // `unsigned int`
    if entries > FIRST_RESERVED_GDT_ENTRY {
        return Err(XEN_EINVAL.into());
    }
    let nr = (entries as u64).div_ceil(PER_FRAME);
    let mut frames = alloc::vec::Vec::with_capacity(nr as usize);
    for i in 0..nr {
        frames.push(env.read::<xen_ulong_t>(dom, element::<xen_ulong_t>(frame_list, i))?);
    }
    for (i, &f) in frames.iter().enumerate() {
        let r = env
            .mm
            .table
            .get_page_and_type(&mut *env.machine, f, dom.id, PageType::SegDesc);
        if r.is_err() {
            log::warn!("d{}: GDT frame {f:#x} refused", dom.id);
            for &g in &frames[..i] {
                env.mm.table.put_page_and_type(&mut *env.machine, g);
            }
            env.mm.reclaim(&mut *env.machine);
            return Err(XEN_EINVAL.into());
        }
    }
    for &old in &dom.gdt_frames {
        env.mm.table.put_page_and_type(&mut *env.machine, old);
    }
    dom.gdt_frames = frames;
    dom.gdt_entries = entries;
    env.mm.reclaim(&mut *env.machine);
    Ok(0)
}

pub fn update_descriptor<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    ma: u64,
    desc: u64,
) -> Result<i64> {
    let Some(fixed) = check_descriptor(desc).filter(|_| ma.is_multiple_of(8)) else {
        return Err(XEN_EINVAL.into());
    };
    let mfn = ma >> PAGE_SHIFT;
    let table = &mut *env.mm.table;
    let m = &mut *env.machine;
    if table.get_page(mfn, dom.id).is_err() {
        return Err(XEN_EINVAL.into());
    }
    let ty = match table.page(mfn).map(|p| p.ty) {
        Some(PageType::SegDesc) => PageType::SegDesc,
        _ => PageType::Writable,
    };
    if table.get_page_type(m, mfn, ty).is_err() {
        table.put_page(mfn);
        return Err(XEN_EINVAL.into());
    }
    write_u64(m, mfn, (ma & 0xfff) as usize, fixed);
    table.put_page_and_type(m, mfn);
    env.mm.reclaim(&mut *env.machine);
    Ok(0)
}
