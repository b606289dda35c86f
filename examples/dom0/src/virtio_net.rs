//! A virtio-net driver (virtio 1.x, section 5.1 "Network Device") for dom0's physical
//! NIC: QEMU's virtio-net on one of microvm's virtio-mmio transports, on the
//! `virtio-drivers` crate's transport and virtqueue like `virtio_blk`. Ours rather than
//! the crate's `VirtIONetRaw`, which notifies the device once per frame, negotiates
//! `VIRTIO_RING_F_EVENT_IDX` (whose notification test in virtio-drivers 0.13 stops
//! working once the 16-bit index wraps, see `virtio_blk`) and sizes both queues alike.
//!
//! Features: `VIRTIO_NET_F_MAC` (required: the MAC is read from the configuration) and
//! `VIRTIO_F_VERSION_1`, nothing else: no checksum offload, no GSO/TSO, no mergeable
//! receive buffers, no control queue, so the header is always all zeros on transmit and
//! ignored on receive, and every frame fits one buffer. The header is 12 bytes (with
//! `num_buffers`); a legacy transport (no `VERSION_1`) gets the legacy 10-byte one.
//!
//! Buffers are [`BUF_SIZE`] bytes, two per DMA page (so none crosses a page and none
//! needs a bounce block), allocated once: [`RX_BUFFERS`] receive buffers, every one
//! posted at all times but while a frame is handed out, and [`TX_BUFFERS`] transmit
//! buffers, reused. Each frame is one descriptor (header and frame together). Nothing
//! is allocated per frame.
//!
//! Interrupts: the receive queue always asks for them; the transmit queue only while
//! every transmit buffer is in flight (finished transmissions are otherwise reclaimed
//! lazily, by the next [`VirtioNic::transmit`]). Not blocking: dom0's loop, on the
//! event of [`VirtioNic::port`], calls [`VirtioNic::ack`] first (so a frame that
//! arrives after the drain interrupts again), then [`VirtioNic::receive`] and retries
//! what [`VirtioNic::transmit`] refused.

use alloc::vec::Vec;
use core::ptr::NonNull;

use bitflags::bitflags;
use libos::device::{Line, Mmio};
use libos::println;
use libos::virtio::XenHal;
use pv_core::microvm::VIRTIO_MMIO_SIZE;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

use crate::virtio_mmio;

/// Receive buffers (and receive queue size; QEMU's queues take up to 256).
pub const RX_BUFFERS: usize = 128;
/// Transmit buffers (and transmit queue size).
pub const TX_BUFFERS: usize = 128;
/// One buffer: the virtio-net header and a frame.
pub const BUF_SIZE: usize = 2048;
const PAGE_SIZE: usize = 4096;
const PER_PAGE: usize = PAGE_SIZE / BUF_SIZE;

const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;

/// `struct virtio_net_hdr` with `num_buffers` (virtio 1.x, 5.1.6).
const HDR_LEN: usize = 12;
/// Without `num_buffers` (a legacy device without mergeable buffers).
const HDR_LEN_LEGACY: usize = 10;

bitflags! {
    /// The feature bits we negotiate (virtio 1.x, 5.1.3 and 6).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Features: u64 {
        const MAC = 1 << 5;
        const VERSION_1 = 1 << 32;
    }
}

/// A MAC address as `52:54:00:12:34:56`.
pub struct Mac(pub [u8; 6]);

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Every transmit buffer is in flight: the frame (of this many bytes) was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxFull(pub usize);

/// What went through the NIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    /// [`VirtioNic::transmit`] refused a frame: every buffer in flight.
    pub tx_full: u64,
    /// Frames longer than [`VirtioNic::max_frame`], dropped by `transmit`.
    pub tx_too_long: u64,
    /// Received buffers the device said it wrote less than a header to, or more than
    /// the buffer: dropped.
    pub rx_dropped: u64,
}

/// `count` buffers of [`BUF_SIZE`] in DMA pages of ours.
struct Pool {
    pages: Vec<NonNull<u8>>,
}

impl Pool {
    fn new(count: usize) -> Option<Pool> {
        let mut pool = Pool { pages: Vec::new() };
        for _ in 0..count.div_ceil(PER_PAGE) {
            let (_, page) = libos::device::dma_alloc(1)?;
            pool.pages.push(page);
        }
        Some(pool)
    }

    fn ptr(&self, i: usize) -> *mut u8 {
        // SAFETY (of the add): within the page, which is PER_PAGE buffers long.
        unsafe {
            self.pages[i / PER_PAGE]
                .as_ptr()
                .add(i % PER_PAGE * BUF_SIZE)
        }
    }

    /// Buffer `i`'s first `len` bytes.
    ///
    /// # Safety
    /// Nothing else (the device included) uses the buffer while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn buf(&self, i: usize, len: usize) -> &mut [u8] {
        debug_assert!(len <= BUF_SIZE);
        // SAFETY: the buffer is BUF_SIZE bytes of a live DMA page; exclusive by the
        // caller's promise.
        unsafe { core::slice::from_raw_parts_mut(self.ptr(i), len) }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for &p in &self.pages {
            // SAFETY: from dma_alloc(1); the device was reset before (the transport
            // drops first).
            unsafe { libos::device::dma_free(p, 1) };
        }
    }
}

/// dom0's virtio-net device, set up with every receive buffer posted.
pub struct VirtioNic {
    // Dropped first: dropping the transport resets the device, which then no longer
    // touches the queues or the buffers dropped after it.
    transport: MmioTransport<'static>,
    rx: VirtQueue<XenHal, RX_BUFFERS>,
    tx: VirtQueue<XenHal, TX_BUFFERS>,
    rx_pool: Pool,
    tx_pool: Pool,
    /// The receive buffer posted under each token (descriptor index), if any.
    rx_posted: [Option<u16>; RX_BUFFERS],
    /// The transmit buffer and its length in flight under each token, if any.
    tx_inflight: [Option<(u16, u16)>; TX_BUFFERS],
    /// Transmit buffers not in flight.
    tx_free: Vec<u16>,
    /// Frames queued since the last notify.
    tx_unflushed: usize,
    /// The transmit queue asks for an interrupt (only while it is full).
    tx_wants_interrupt: bool,
    mac: [u8; 6],
    hdr_len: usize,
    features: Features,
    stats: NicStats,
    line: Line,
    /// Keeps the registers mapped (after everything that uses them, in drop order).
    _regs: Mmio,
}

impl VirtioNic {
    /// The first virtio-net device on the machine, set up (features `VIRTIO_NET_F_MAC`
    /// and `VIRTIO_F_VERSION_1`, see the module documentation), with every receive
    /// buffer posted. None when there is none; a device that fails to set up is
    /// reported on the console (and the next one tried).
    pub fn find() -> Option<VirtioNic> {
        for w in virtio_mmio::windows() {
            if w.device_id != DeviceType::Network as u32 {
                continue;
            }
            let opened = Mmio::map(w.maddr, VIRTIO_MMIO_SIZE)
                .map_err(|e| alloc::format!("its registers: {e}"))
                .and_then(|regs| VirtioNic::open(regs, w.gsi));
            match opened {
                Ok(nic) => return Some(nic),
                Err(why) => println!("dom0: nic: virtio-net at {:#x}: {why}", w.maddr),
            }
        }
        None
    }

    fn open(regs: Mmio, gsi: u32) -> Result<VirtioNic, alloc::string::String> {
        let header: NonNull<VirtIOHeader> = regs.ptr().cast();
        // SAFETY: the window is a virtio-mmio device's, mapped for as long as `regs`
        // lives, which the NIC keeps (and drops after the transport).
        let mut transport = unsafe { MmioTransport::new(header, VIRTIO_MMIO_SIZE as usize) }
            .map_err(|e| alloc::format!("{e:?}"))?;
        let features = transport.begin_init(Features::MAC | Features::VERSION_1);
        if !features.contains(Features::MAC) {
            return Err("the device has no MAC address (no VIRTIO_NET_F_MAC)".into());
        }
        let verr = |e: virtio_drivers::Error| alloc::format!("{e}");
        // Configuration (5.1.4): the MAC at 0.
        let mac = transport
            .read_consistent(|| {
                let mut mac = [0u8; 6];
                for (i, b) in mac.iter_mut().enumerate() {
                    *b = transport.read_config_space::<u8>(i)?;
                }
                Ok(mac)
            })
            .map_err(verr)?;
        let rx = VirtQueue::new(&mut transport, RX_QUEUE, false, false).map_err(verr)?;
        let mut tx = VirtQueue::new(&mut transport, TX_QUEUE, false, false).map_err(verr)?;
        // Finished transmissions are reclaimed by the next transmit, without an
        // interrupt (until the queue is full).
        tx.set_dev_notify(false);
        let (Some(rx_pool), Some(tx_pool)) = (Pool::new(RX_BUFFERS), Pool::new(TX_BUFFERS)) else {
            return Err("no DMA pages for its buffers".into());
        };
        transport.finish_init();
        let line = Line::bind(gsi).map_err(|e| alloc::format!("its interrupt: {e}"))?;
        let mut nic = VirtioNic {
            transport,
            rx,
            tx,
            rx_pool,
            tx_pool,
            rx_posted: [None; RX_BUFFERS],
            tx_inflight: [None; TX_BUFFERS],
            tx_free: (0..TX_BUFFERS as u16).rev().collect(),
            tx_unflushed: 0,
            tx_wants_interrupt: false,
            mac,
            hdr_len: if features.contains(Features::VERSION_1) {
                HDR_LEN
            } else {
                HDR_LEN_LEGACY
            },
            features,
            stats: NicStats::default(),
            line,
            _regs: regs,
        };
        for b in 0..RX_BUFFERS as u16 {
            nic.post_rx(b).map_err(verr)?;
        }
        nic.transport.notify(RX_QUEUE);
        Ok(nic)
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn features(&self) -> Features {
        self.features
    }

    /// Receive buffers posted (all of them, between calls).
    pub fn rx_buffers(&self) -> usize {
        self.rx_posted.iter().filter(|p| p.is_some()).count()
    }

    /// The longest frame [`VirtioNic::transmit`] takes (a buffer less the header).
    pub fn max_frame(&self) -> usize {
        BUF_SIZE - self.hdr_len
    }

    /// The event channel port its interrupt arrives on (dom0's loop checks
    /// `events::take_latched(port)`).
    pub fn port(&self) -> u32 {
        self.line.port
    }

    /// Waits until the interrupt fired or `timeout_ns` passed (idling in
    /// `SCHEDOP_poll`), for a caller with nothing else to do (the self-test); returns
    /// whether it fired, consuming its event. dom0's loop waits on `port` instead.
    pub fn wait(&self, timeout_ns: u64) -> bool {
        self.line.wait(timeout_ns)
    }

    /// Queues one Ethernet frame (without the virtio-net header, which the driver
    /// adds), copied into a transmit buffer of the driver's; finished transmissions are
    /// reclaimed first. `Err(TxFull(frame.len()))` when every transmit buffer is in
    /// flight: the caller keeps the frame and tries after the next event (the queue
    /// then asks for an interrupt when buffers come back). A frame longer than
    /// [`VirtioNic::max_frame`] is dropped and counted (`tx_too_long`). The device
    /// hears of queued frames at [`VirtioNic::flush`].
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), TxFull> {
        if frame.len() > self.max_frame() {
            self.stats.tx_too_long += 1;
            return Ok(());
        }
        self.reclaim();
        if self.tx_free.is_empty() {
            // Ask for an interrupt when the device finishes one, then look again: it
            // may have finished before it saw the request.
            self.set_tx_interrupt(true);
            self.reclaim();
        }
        let Some(b) = self.tx_free.pop() else {
            self.stats.tx_full += 1;
            return Err(TxFull(frame.len()));
        };
        let len = self.hdr_len + frame.len();
        // SAFETY: buffer `b` is free: neither posted nor referenced elsewhere.
        let buf = unsafe { self.tx_pool.buf(b.into(), len) };
        buf[..self.hdr_len].fill(0);
        buf[self.hdr_len..].copy_from_slice(frame);
        // SAFETY: the buffer stays put and untouched until `reclaim` pops its token.
        match unsafe { self.tx.add(&[buf], &mut []) } {
            Ok(token) => {
                self.tx_inflight[usize::from(token)] = Some((b, len as u16));
                self.tx_unflushed += 1;
                self.stats.frames_out += 1;
                self.stats.bytes_out += frame.len() as u64;
                Ok(())
            }
            Err(_) => {
                // Descriptors and buffers are as many: not reached.
                self.tx_free.push(b);
                self.stats.tx_full += 1;
                Err(TxFull(frame.len()))
            }
        }
    }

    /// Tells the device about queued transmissions (one notify per batch).
    pub fn flush(&mut self) {
        if self.tx_unflushed > 0 {
            self.tx_unflushed = 0;
            if self.tx.should_notify() {
                self.transport.notify(TX_QUEUE);
            }
        }
    }

    /// Hands every received frame (header stripped) to `f`, reposts the buffers
    /// (one notify), and returns how many frames `f` got.
    pub fn receive(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut frames = 0;
        let mut reposted = false;
        while let Some(token) = self.rx.peek_used() {
            let Some(b) = self.rx_posted.get(usize::from(token)).copied().flatten() else {
                println!("dom0: nic: the device used receive descriptor {token}, never posted");
                break;
            };
            // SAFETY: the device is done with buffer `b` (it is in the used ring);
            // reposted below before anything else could use it.
            let buf = unsafe { self.rx_pool.buf(b.into(), BUF_SIZE) };
            // SAFETY: the buffer posted under `token`.
            let used = match unsafe { self.rx.pop_used(token, &[], &mut [buf]) } {
                Ok(n) => n as usize,
                Err(e) => {
                    println!("dom0: nic: receive queue: {e}");
                    break;
                }
            };
            self.rx_posted[usize::from(token)] = None;
            if used < self.hdr_len || used > BUF_SIZE {
                self.stats.rx_dropped += 1;
            } else {
                // SAFETY: as above: ours until reposted.
                let buf = unsafe { self.rx_pool.buf(b.into(), used) };
                f(&buf[self.hdr_len..]);
                frames += 1;
                self.stats.frames_in += 1;
                self.stats.bytes_in += (used - self.hdr_len) as u64;
            }
            if let Err(e) = self.post_rx(b) {
                println!("dom0: nic: reposting a receive buffer: {e}");
            }
            reposted = true;
        }
        if reposted && self.rx.should_notify() {
            self.transport.notify(RX_QUEUE);
        }
        frames
    }

    /// Acknowledges the interrupt (ISR read and acknowledged) and EOIs the line, so
    /// the next one arrives.
    pub fn ack(&mut self) {
        self.transport.ack_interrupt();
        self.line.eoi();
    }

    pub fn stats(&self) -> NicStats {
        self.stats
    }

    /// Posts receive buffer `b` (without notifying).
    fn post_rx(&mut self, b: u16) -> Result<(), virtio_drivers::Error> {
        // SAFETY: buffer `b` is not posted; it stays put and untouched until `receive`
        // pops its token.
        let buf = unsafe { self.rx_pool.buf(b.into(), BUF_SIZE) };
        // SAFETY: as above.
        let token = unsafe { self.rx.add(&[], &mut [buf])? };
        self.rx_posted[usize::from(token)] = Some(b);
        Ok(())
    }

    /// Takes back the transmit buffers the device is done with.
    fn reclaim(&mut self) {
        let mut any = false;
        while let Some(token) = self.tx.peek_used() {
            let Some((b, len)) = self.tx_inflight.get(usize::from(token)).copied().flatten() else {
                println!("dom0: nic: the device used transmit descriptor {token}, never queued");
                return;
            };
            // SAFETY: the device is done with it (it is in the used ring).
            let buf = unsafe { self.tx_pool.buf(b.into(), len.into()) };
            // SAFETY: the buffer queued under `token`, of that length.
            if let Err(e) = unsafe { self.tx.pop_used(token, &[buf], &mut []) } {
                println!("dom0: nic: transmit queue: {e}");
                return;
            }
            self.tx_inflight[usize::from(token)] = None;
            self.tx_free.push(b);
            any = true;
        }
        if any && self.tx_wants_interrupt {
            self.set_tx_interrupt(false);
        }
    }

    fn set_tx_interrupt(&mut self, on: bool) {
        self.tx.set_dev_notify(on);
        self.tx_wants_interrupt = on;
    }
}
