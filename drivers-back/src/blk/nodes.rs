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
//!
//! Each directory's permissions are set before anything is written into it: a new
//! node takes its parent's.

use alloc::format;
use alloc::string::String;

use xenbus::{Store, XsError, NO_TX};

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
    let front = vbd.front;
    let fe_perms = [format!("n{front}"), format!("r{back}")];
    let be_perms = [format!("n{back}"), format!("r{front}")];
    for (dir, perms) in [(&fe, &fe_perms), (&be, &be_perms)] {
        store.mkdir(NO_TX, dir).await?;
        let perms = [perms[0].as_str(), perms[1].as_str()];
        store.set_perms(NO_TX, dir, &perms).await?;
    }
    let (front_id, back_id) = (format!("{front}"), format!("{back}"));
    let id = format!("{}", vbd.id);
    let mode = if vbd.readonly { "r" } else { "w" };
    let nodes = [
        (&fe, "backend", be.as_str()),
        (&fe, "backend-id", back_id.as_str()),
        (&fe, "virtual-device", id.as_str()),
        (&fe, "device-type", "disk"),
        (&fe, "state", "1"),
        (&be, "frontend", fe.as_str()),
        (&be, "frontend-id", front_id.as_str()),
        (&be, "online", "1"),
        (&be, "removable", "0"),
        (&be, "bootable", "1"),
        (&be, "dev", vbd.vdev),
        (&be, "type", "phy"),
        (&be, "mode", mode),
        (&be, "device-type", "disk"),
        (&be, "params", vbd.params),
        (&be, "state", "1"),
    ];
    for (dir, name, value) in nodes {
        store
            .write_str(NO_TX, &format!("{dir}/{name}"), value)
            .await?;
    }
    Ok(())
}

/// Removes both directories (the toolstack's `libxl__device_destroy`).
pub async fn remove<S: Store>(store: &S, back: u16, vbd: &Vbd<'_>) -> Result<(), XsError> {
    for dir in [vbd.front_dir(), vbd.back_dir(back)] {
        match store.rm(NO_TX, &dir).await {
            Ok(()) | Err(XsError::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
