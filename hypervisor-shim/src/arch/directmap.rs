//! Machine memory through the direct map: physical address `p` is at `DIRECTMAP + p`
//! (the boot page tables map the low 4 GiB there, and every guest L4 carries that slot).

use hypervisor_shim::machine::{Frame, Machine, Mfn, PAGE_SHIFT};

use super::boot::{DIRECTMAP, DIRECTMAP_BYTES};

pub struct DirectMap;

impl DirectMap {
    fn ptr(mfn: Mfn) -> Option<*mut Frame> {
        (mfn < DIRECTMAP_BYTES >> PAGE_SHIFT)
            .then(|| (DIRECTMAP + (mfn << PAGE_SHIFT)) as *mut Frame)
    }

    /// The bytes of a boot module, in place.
    pub fn module(start: u64, size: u64) -> Option<&'static [u8]> {
        let end = start.checked_add(size)?;
        if end > DIRECTMAP_BYTES {
            return None;
        }
        // SAFETY: the range is mapped (below DIRECTMAP_BYTES); the module's frames are
        // reserved in the frame allocator, so nothing writes them while this lives.
        Some(unsafe {
            core::slice::from_raw_parts((DIRECTMAP + start) as *const u8, size as usize)
        })
    }
}

impl Machine for DirectMap {
    fn frame(&self, mfn: Mfn) -> Option<&Frame> {
        // SAFETY: the frame is inside the direct map; the shim is single-threaded and
        // never runs while a guest does, so no concurrent writer exists.
        Self::ptr(mfn).map(|p| unsafe { &*p })
    }

    fn release_address_space(&mut self, l4: Mfn) {
        if x86_64::registers::control::Cr3::read_raw()
            .0
            .start_address()
            .as_u64()
            == l4 << PAGE_SHIFT
        {
            super::cpu::load_idle_tables();
        }
    }

    fn tsc(&self) -> u64 {
        super::cpu::rdtsc()
    }

    fn port_in(&mut self, port: u16, size: u8) -> u32 {
        use x86_64::instructions::port::Port;
        // SAFETY: the lib only asks for ports the privileged domain may use
        // (`emulate::io_permitted`), never the shim's own devices.
        unsafe {
            match size {
                1 => Port::<u8>::new(port).read() as u32,
                2 => Port::<u16>::new(port).read() as u32,
                _ => Port::<u32>::new(port).read(),
            }
        }
    }

    fn port_out(&mut self, port: u16, size: u8, value: u32) {
        use x86_64::instructions::port::Port;
        // SAFETY: as for `port_in`: only ports the privileged domain may use.
        unsafe {
            match size {
                1 => Port::<u8>::new(port).write(value as u8),
                2 => Port::<u16>::new(port).write(value as u16),
                _ => Port::<u32>::new(port).write(value),
            }
        }
    }

    fn frame_mut(&mut self, mfn: Mfn) -> Option<&mut Frame> {
        // SAFETY: as above; `&mut self` serialises access through the shim.
        Self::ptr(mfn).map(|p| unsafe { &mut *p })
    }
}
