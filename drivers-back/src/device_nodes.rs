//! The two directories a toolstack writes for a split device before either end runs
//! (libxl's `libxl__device_generic_add`; Xen's `docs/misc/xenstore-paths.pandoc`):
//! the front end's, owned by the front end's domain and readable by the back end's,
//! and the back end's, owned by the back end's domain and readable by the front end's.
//! Each directory's permissions are set before anything is written into it: a new
//! node takes its parent's.

use alloc::format;

use xenbus::{Store, XsError, NO_TX};

/// Makes `fe` (of domain `front`) and `be` (of domain `back`) with their
/// permissions, and writes `fe_nodes` and `be_nodes` (name, value) into them.
pub async fn create<S: Store>(
    store: &S,
    (front, fe, fe_nodes): (u16, &str, &[(&str, &str)]),
    (back, be, be_nodes): (u16, &str, &[(&str, &str)]),
) -> Result<(), XsError> {
    let fe_perms = [format!("n{front}"), format!("r{back}")];
    let be_perms = [format!("n{back}"), format!("r{front}")];
    for (dir, perms) in [(fe, &fe_perms), (be, &be_perms)] {
        store.mkdir(NO_TX, dir).await?;
        let perms = [perms[0].as_str(), perms[1].as_str()];
        store.set_perms(NO_TX, dir, &perms).await?;
    }
    for (dir, nodes) in [(fe, fe_nodes), (be, be_nodes)] {
        for (name, value) in nodes {
            store
                .write_str(NO_TX, &format!("{dir}/{name}"), value)
                .await?;
        }
    }
    Ok(())
}

/// Removes both directories (the toolstack's `libxl__device_destroy`); one already
/// gone is not an error.
pub async fn remove<S: Store>(store: &S, fe: &str, be: &str) -> Result<(), XsError> {
    for dir in [fe, be] {
        match store.rm(NO_TX, dir).await {
            Ok(()) | Err(XsError::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
