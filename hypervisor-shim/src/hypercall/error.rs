//! What a hypercall tells a guest when it fails: one [`Error`] for every hypercall.
//!
//! Xen answers in two ways (`xen/include/public/errno.h`, `grant_table.h`): a negative
//! errno in RAX, which ends the call, and, for the grant-table operations, a `GNTST_*`
//! status written into each operation's own `status` field, after which the batch goes
//! on. Both are values of this type, so that the layers' own answers (`xen_errno` from
//! the event-channel and memory mechanisms, [`Status`] from the grant table) reach the
//! guest through `?` without per-file conversions.

use xen_sys::{xen_errno, XEN_EFAULT, XEN_EINVAL};

use crate::devices::IrqError;
use crate::state::grant_table::Status;

/// Why a hypercall, or one operation of a grant batch, failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `-errno` in RAX; the hypercall stops.
    Errno(xen_errno),
    /// A grant operation's `GNTST_*` status (negative), written into the operation by
    /// `grant_table.rs`; the batch goes on with the next operation.
    Grant(Status),
}

pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// A guest address that cannot be read or written (`-EFAULT`).
    pub const FAULT: Error = Error::Errno(XEN_EFAULT);

    /// The value for RAX. A grant status is not a hypercall's answer: it is written
    /// into the operation, so reaching RAX with one is the shim's mistake, and the
    /// guest sees `-EINVAL`.
    pub fn rax(self) -> i64 {
        match self {
            Error::Errno(e) => -(e as i64),
            Error::Grant(s) => {
                debug_assert!(false, "grant status {s} returned as a hypercall result");
                -(XEN_EINVAL as i64)
            }
        }
    }
}

impl From<xen_errno> for Error {
    fn from(e: xen_errno) -> Self {
        Error::Errno(e)
    }
}

impl From<IrqError> for Error {
    fn from(e: IrqError) -> Self {
        Error::Errno(match e {
            IrqError::NoSuchLine | IrqError::NotMapped => XEN_EINVAL,
            IrqError::Taken => xen_sys::XEN_EBUSY,
            IrqError::Bound => xen_sys::XEN_EEXIST,
        })
    }
}

/// A hypercall's result as RAX: the value, or the error's encoding.
pub fn to_rax(r: Result<i64>) -> i64 {
    r.unwrap_or_else(Error::rax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_sys::{XEN_ENOSYS, XEN_ESRCH};

    #[test]
    fn errno_is_negative_in_rax() {
        assert_eq!(to_rax(Ok(7)), 7);
        assert_eq!(to_rax(Err(XEN_ESRCH.into())), -3);
        assert_eq!(Error::FAULT.rax(), -14);
        assert_eq!(Error::from(XEN_ENOSYS).rax(), -38);
    }
}
