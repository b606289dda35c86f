//! What the PVH loader tells us (`arch-x86/hvm/start_info.h`): the memory map, the boot
//! modules and the command line.

use alloc::string::String;
use alloc::vec::Vec;
use core::mem::{offset_of, size_of};

use xen_sys::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_START_MAGIC_VALUE,
};

use crate::machine::Machine;

#[derive(Clone, Debug, Default)]
pub struct BootInfo {
    /// RAM ranges `(start, end)` in bytes.
    pub ram: Vec<(u64, u64)>,
    /// Boot modules `(start, size)` in bytes.
    pub modules: Vec<(u64, u64)>,
    pub cmdline: String,
}

fn read_cstr<M: Machine + ?Sized>(m: &M, paddr: u64, max: usize) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    for i in 0..max as u64 {
        if paddr == 0 || m.read_phys(paddr + i, &mut b).is_none() || b[0] == 0 {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse<M: Machine + ?Sized>(m: &M, paddr: u64) -> Result<BootInfo, &'static str> {
    let u32_at = |off: usize| {
        m.read_phys_u32(paddr + off as u64)
            .ok_or("start info unreadable")
    };
    let u64_at = |off: usize| {
        m.read_phys_u64(paddr + off as u64)
            .ok_or("start info unreadable")
    };
    if u32_at(offset_of!(hvm_start_info, magic))? != XEN_HVM_START_MAGIC_VALUE {
        return Err("bad hvm_start_info magic");
    }
    let mut info = BootInfo::default();
    let nr_modules = u32_at(offset_of!(hvm_start_info, nr_modules))?.min(16);
    let modlist = u64_at(offset_of!(hvm_start_info, modlist_paddr))?;
    for i in 0..nr_modules as u64 {
        let e = modlist + i * size_of::<hvm_modlist_entry>() as u64;
        let start = m
            .read_phys_u64(e + offset_of!(hvm_modlist_entry, paddr) as u64)
            .ok_or("bad module list")?;
        let size = m
            .read_phys_u64(e + offset_of!(hvm_modlist_entry, size) as u64)
            .ok_or("bad module list")?;
        info.modules.push((start, size));
    }
    info.cmdline = read_cstr(m, u64_at(offset_of!(hvm_start_info, cmdline_paddr))?, 4096);
    if u32_at(offset_of!(hvm_start_info, version))? >= 1 {
        let map = u64_at(offset_of!(hvm_start_info, memmap_paddr))?;
        let n = u32_at(offset_of!(hvm_start_info, memmap_entries))?.min(128);
        for i in 0..n as u64 {
            let e = map + i * size_of::<hvm_memmap_table_entry>() as u64;
            let at = |off: usize| m.read_phys_u64(e + off as u64).ok_or("bad memory map");
            let kind = m
                .read_phys_u32(e + offset_of!(hvm_memmap_table_entry, type_) as u64)
                .ok_or("bad memory map")?;
            if kind == xen_sys::XEN_HVM_MEMMAP_TYPE_RAM {
                let start = at(offset_of!(hvm_memmap_table_entry, addr))?;
                let size = at(offset_of!(hvm_memmap_table_entry, size))?;
                info.ram.push((start, start.saturating_add(size)));
            }
        }
    }
    if info.ram.is_empty() {
        return Err("no memory map in hvm_start_info (version 0 loaders are not supported)");
    }
    Ok(info)
}
