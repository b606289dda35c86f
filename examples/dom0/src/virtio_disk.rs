//! dom0's real disks: QEMU's virtio-blk devices on microvm's virtio-mmio transports,
//! driven with the `virtio-drivers` crate over libos's device access (registers mapped
//! through the PV MMU, the interrupt as a pirq on an event channel, DMA by machine
//! address). Each is a [`BlockDevice`] for blkback, known by its virtio serial (the
//! manifest's `vbd<N>`).
//!
//! A request is queued (`virtio_blk`), then dom0 waits for the device's interrupt (the
//! line's event) and acknowledges it at the device and with an EOI; every operation,
//! flush included, returns only once the device answered it, so blkback answers a
//! flush only after the device's own flush. Discard is offered when the device
//! negotiates `VIRTIO_BLK_F_DISCARD` (QEMU's `-drive ...,discard=unmap` punches holes
//! in the image).

use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use drivers_back::blk::{BlockDevice, IoError, IoOp};
use libos::device::{Line, Mmio};
use libos::println;
use pv_core::microvm::VIRTIO_MMIO_SIZE;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

use crate::virtio_blk::{Data, Op, Request, VirtioBlk, SECTOR_SIZE};
use crate::virtio_mmio;

/// How long a request may take before dom0 looks at the queue again without an
/// interrupt (a lost interrupt costs this much, never a hang).
const WAIT_NS: u64 = 20_000_000;

pub struct VirtioDisk {
    pub serial: String,
    blk: VirtioBlk,
    line: Line,
    /// Keeps the registers mapped (after `blk`, which uses them, in drop order).
    _regs: Mmio,
}

/// Finds every virtio-blk device dom0 may drive.
pub fn find() -> Vec<VirtioDisk> {
    let mut disks = Vec::new();
    for w in virtio_mmio::windows() {
        if w.device_id != DeviceType::Block as u32 {
            continue;
        }
        let gsi = w.gsi;
        let opened = Mmio::map(w.maddr, VIRTIO_MMIO_SIZE)
            .map_err(|e| alloc::format!("its registers: {e}"))
            .and_then(|regs| open(regs, gsi));
        match opened {
            Ok(Some(d)) => {
                println!(
                    "dom0: virtio-blk {} at {:#x} (GSI {gsi}): {} sectors{}, features {:?}",
                    d.serial,
                    w.maddr,
                    d.blk.capacity(),
                    if d.blk.readonly() { ", read-only" } else { "" },
                    d.blk.features()
                );
                disks.push(d);
            }
            Ok(None) => {}
            Err(why) => println!("dom0: virtio device at {:#x}: {why}", w.maddr),
        }
    }
    disks
}

fn open(regs: Mmio, gsi: u32) -> Result<Option<VirtioDisk>, String> {
    let header: NonNull<VirtIOHeader> = regs.ptr().cast();
    // SAFETY: the window is a virtio-mmio device's, mapped for as long as `regs` lives,
    // which the disk keeps (and drops after the driver).
    let t = unsafe { MmioTransport::new(header, VIRTIO_MMIO_SIZE as usize) }
        .map_err(|e| alloc::format!("{e:?}"))?;
    if t.device_type() != DeviceType::Block {
        return Ok(None);
    }
    let blk = VirtioBlk::new(t).map_err(|e| alloc::format!("{e}"))?;
    let line = Line::bind(gsi).map_err(|e| alloc::format!("its interrupt: {e}"))?;
    let mut disk = VirtioDisk {
        serial: String::new(),
        blk,
        line,
        _regs: regs,
    };
    let mut id = [0u8; 20];
    disk.run(Request::new(Op::GetId, 0), Data::FromDevice(&mut id))
        .map_err(|_| String::from("GetId failed"))?;
    let n = id.iter().position(|&b| b == 0).unwrap_or(id.len());
    disk.serial = String::from_utf8_lossy(&id[..n]).into_owned();
    Ok(Some(disk))
}

impl VirtioDisk {
    pub fn readonly(&self) -> bool {
        self.blk.readonly()
    }

    /// Whether the device discards (`feature-discard` for the vbd).
    pub fn discards(&self) -> bool {
        self.blk.max_discard_sectors > 0
    }

    /// One request, start to answer: queued, then waited for on the device's line.
    fn run(&mut self, mut req: Request, mut data: Data<'_>) -> Result<(), IoError> {
        // SAFETY: `req` and `data` live on this frame until the request completes below.
        let token = unsafe { self.blk.submit(&mut req, &mut data) }.map_err(|e| {
            println!("dom0: virtio-blk {}: {e}", self.serial);
            IoError
        })?;
        while self.blk.peek_used() != Some(token) {
            if self.line.wait(WAIT_NS) {
                self.served_interrupt();
            }
        }
        self.settle();
        // SAFETY: the same buffers as queued with `token`.
        unsafe { self.blk.complete(token, &mut req, &mut data) }.map_err(|e| {
            println!("dom0: virtio-blk {}: {e}", self.serial);
            IoError
        })
    }

    /// The device's interrupt was taken: acknowledged at the device, the line EOI'd.
    fn served_interrupt(&mut self) {
        self.blk.ack_interrupt();
        self.line.eoi();
    }

    /// An answer that came without our waiting may have left the line in flight.
    fn settle(&mut self) {
        if libos::events::take_latched(self.line.port) {
            self.served_interrupt();
        }
    }

    fn sector(offset: u64, len: usize) -> Result<usize, IoError> {
        if !offset.is_multiple_of(SECTOR_SIZE as u64)
            || len == 0
            || !len.is_multiple_of(SECTOR_SIZE)
        {
            return Err(IoError);
        }
        usize::try_from(offset / SECTOR_SIZE as u64).map_err(|_| IoError)
    }
}

/// A read's or write's buffer as the device sees it.
fn data_of(write: bool, buf: &mut [u8]) -> Data<'_> {
    if write {
        Data::ToDevice(buf)
    } else {
        Data::FromDevice(buf)
    }
}

impl BlockDevice for VirtioDisk {
    fn sectors(&self) -> u64 {
        self.blk.capacity()
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let sector = Self::sector(offset, buf.len())?;
        self.run(Request::new(Op::Read, sector as u64), Data::FromDevice(buf))
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let sector = Self::sector(offset, data.len())?;
        self.run(Request::new(Op::Write, sector as u64), Data::ToDevice(data))
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.run(Request::new(Op::Flush, 0), Data::None)
    }

    /// Every operation in flight at once (the queue holds 42 requests of three
    /// descriptors; blkback's batches are at most 32), completed in whatever order the
    /// device finishes them.
    fn run_batch(&mut self, ops: &mut [IoOp]) {
        let mut reqs = Vec::with_capacity(ops.len());
        let mut tokens = Vec::with_capacity(ops.len());
        for op in ops.iter_mut() {
            let kind = if op.write { Op::Write } else { Op::Read };
            reqs.push(Request::new(kind, op.offset / SECTOR_SIZE as u64));
            tokens.push(None);
        }
        for (i, op) in ops.iter_mut().enumerate() {
            if Self::sector(op.offset, op.buf.len()).is_err() {
                op.result = Err(IoError);
                continue;
            }
            let mut d = data_of(op.write, &mut op.buf);
            // SAFETY: `reqs[i]` and the buffer (in `ops`, which is neither moved nor
            // touched meanwhile) stay put until completed below, before this returns.
            match unsafe { self.blk.queue_only(&mut reqs[i], &mut d) } {
                Ok(t) => tokens[i] = Some(t),
                Err(e) => {
                    println!("dom0: virtio-blk {}: {e}", self.serial);
                    op.result = Err(IoError);
                }
            }
        }
        self.blk.kick();
        let mut left = tokens.iter().filter(|t| t.is_some()).count();
        while left > 0 {
            while let Some(t) = self.blk.peek_used() {
                let Some(i) = tokens.iter().position(|x| *x == Some(t)) else {
                    println!(
                        "dom0: virtio-blk {}: the device used an unknown request",
                        self.serial
                    );
                    return;
                };
                let op = &mut ops[i];
                let mut d = data_of(op.write, &mut op.buf);
                // SAFETY: the same request and buffer as queued with `t`.
                let r = unsafe { self.blk.complete(t, &mut reqs[i], &mut d) };
                op.result = r.map_err(|e| {
                    println!("dom0: virtio-blk {}: {e}", self.serial);
                    IoError
                });
                tokens[i] = None;
                left -= 1;
            }
            if left > 0 && self.line.wait(WAIT_NS) {
                self.served_interrupt();
            }
        }
        self.settle();
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), IoError> {
        let max = u64::from(self.blk.max_discard_sectors);
        if max == 0 {
            return Err(IoError);
        }
        let mut sector = Self::sector(offset, len as usize)? as u64;
        let mut left = len / SECTOR_SIZE as u64;
        while left > 0 {
            let n = left.min(max);
            self.run(Request::discard(sector, n as u32), Data::None)?;
            sector += n;
            left -= n;
        }
        Ok(())
    }
}
