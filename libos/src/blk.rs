//! Virtual disks: the `vbd` devices the toolstack gave this domain
//! (`device/vbd/<id>`), connected through drivers-front's blkfront over xenstore,
//! used through the async [`Disk`] (read, write, flush, discard at byte offsets).
//!
//! ```ignore
//! let disk = blk::open(blk::devices().await?[0]).await?;
//! disk.write(0, &data).await?;
//! disk.flush().await?;
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;

use drivers_front::blkfront::{self, Error};
use xenbus::XsError;

use crate::events::{self, Port};
use crate::platform::Xen;
use crate::xenbus as store;

/// A connected virtual disk of this domain.
pub type Disk = blkfront::Disk<Xen>;

/// Operations in flight per disk (Linux's blkfront default queue depth is 64; 32 is
/// the depth the benchmarks use).
pub const QUEUE_DEPTH: usize = 32;

/// Queues per disk, if the back end offers them (`multi-queue-max-queues`): a ring
/// and an event channel each, requests spread over them.
pub const QUEUES: usize = 2;

/// Data pages per queue, granted once (1 MiB in flight: one full indirect request, or
/// 256 page-sized ones).
pub const POOL_PAGES: usize = 256;

/// The ids of this domain's vbds (`device/vbd/*`).
pub async fn devices() -> Result<Vec<u32>, XsError> {
    xenbus::device::front_devices(store::store()?, "vbd").await
}

/// Connects vbd `id` and returns its disk, woken by its event channel. The disk lives
/// as long as the domain.
pub async fn open(id: u32) -> Result<&'static Disk, Error> {
    let xs = store::store()?;
    let fronts = blkfront::connect_queues(xs, Xen, id, POOL_PAGES, QUEUES).await?;
    let ports: Vec<Port> = fronts.iter().map(|f| f.port()).collect();
    let disk: &'static Disk = Box::leak(Box::new(Disk::with_queues(fronts, QUEUE_DEPTH)));
    let handler: events::Handler = Box::leak(Box::new(move |_port: Port| disk.wake_all()));
    for port in ports {
        events::bind(port, handler);
    }
    Ok(disk)
}
