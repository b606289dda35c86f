//! The nodes a toolstack writes to create a vbd, before either end runs (libxl's
//! `libxl__device_disk_add` and `libxl__device_generic_add`; Xen's
//! `docs/misc/xenstore-paths.pandoc`):
//!
//! - the front end's `/local/domain/<front>/device/vbd/<id>`, owned by the front end
//!   and readable by the back end's domain: `backend`, `backend-id`, `state`,
//!   `virtual-device`, `device-type`;
//! - the back end's `/local/domain/<back>/backend/vbd/<front>/<id>`, owned by the back
//!   end's domain and readable by the front end: `frontend`, `frontend-id`, `online`,
//!   `removable`, `bootable`, `state`, `dev`, `type`, `mode`, `device-type`, `params`.

use alloc::format;
use alloc::string::String;

use xenbus::{Store, XsError};

use crate::device_nodes;

/// One vbd as the toolstack describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vbd<'a> {
    /// The front end's domain and device number (`xenbus::vdev::parse`).
    pub front: u16,
    pub id: u32,
    /// The name the front end is told (`xvda`).
    pub vdev: &'a str,
    pub readonly: bool,
    /// What backs it, for people reading the store (`params`).
    pub params: &'a str,
}

impl Vbd<'_> {
    pub fn front_dir(&self) -> String {
        format!("/local/domain/{}/device/vbd/{}", self.front, self.id)
    }

    pub fn back_dir(&self, back: u16) -> String {
        format!(
            "/local/domain/{back}/backend/vbd/{}/{}",
            self.front, self.id
        )
    }
}

/// Writes the nodes of `vbd`, served by domain `back` (the caller: the toolstack is
/// the back end's domain here, as in a dom0 that serves its own disks).
pub async fn create<S: Store>(store: &S, back: u16, vbd: &Vbd<'_>) -> Result<(), XsError> {
    let (fe, be) = (vbd.front_dir(), vbd.back_dir(back));
    let (front_id, back_id) = (format!("{}", vbd.front), format!("{back}"));
    let id = format!("{}", vbd.id);
    let mode = if vbd.readonly { "r" } else { "w" };
    let fe_nodes = [
        ("backend", be.as_str()),
        ("backend-id", back_id.as_str()),
        ("virtual-device", id.as_str()),
        ("device-type", "disk"),
        ("state", "1"),
    ];
    let be_nodes = [
        ("frontend", fe.as_str()),
        ("frontend-id", front_id.as_str()),
        ("online", "1"),
        ("removable", "0"),
        ("bootable", "1"),
        ("dev", vbd.vdev),
        ("type", "phy"),
        ("mode", mode),
        ("device-type", "disk"),
        ("params", vbd.params),
        ("state", "1"),
    ];
    device_nodes::create(store, (vbd.front, &fe, &fe_nodes), (back, &be, &be_nodes)).await
}

/// Removes both directories (the toolstack's `libxl__device_destroy`).
pub async fn remove<S: Store>(store: &S, back: u16, vbd: &Vbd<'_>) -> Result<(), XsError> {
    device_nodes::remove(store, &vbd.front_dir(), &vbd.back_dir(back)).await
}
