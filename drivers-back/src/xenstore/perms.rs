//! Node permissions (`struct xs_permissions`, the `n`/`r`/`w`/`b` strings of
//! `docs/misc/xenstore.txt`, and `perm_for_conn` in C `xenstored_core.c`).
//!
//! A node's permission list is never empty. Its first entry names the owner and gives
//! the access of every domain not listed; later entries give the access of one domain
//! each. The owner and privileged callers (dom0) always have full access; a caller
//! that is the device model of a target domain (`XS_SET_TARGET`) is treated as that
//! domain too.

use alloc::string::String;
use core::fmt;
use pv_core::xs_wire::XsError;

/// Access granted by one permission entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: nothing.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }

    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }

    fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }
}

/// One permission entry, e.g. `r5`: domain 5 may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perm {
    pub domid: u16,
    pub access: Access,
}

impl Perm {
    pub const fn new(access: Access, domid: u16) -> Perm {
        Perm { domid, access }
    }

    /// Parses one entry: a letter (`n`, `r`, `w`, `b`) and a decimal domain id.
    pub fn parse(s: &[u8]) -> Result<Perm, XsError> {
        let (&letter, digits) = s.split_first().ok_or(XsError::EINVAL)?;
        let access = match letter {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return Err(XsError::EINVAL),
        };
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(XsError::EINVAL);
        }
        let domid = digits
            .iter()
            .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        let domid = u16::try_from(domid).map_err(|_| XsError::EINVAL)?;
        Ok(Perm { domid, access })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

/// The wire form of a permission list: each entry followed by a NUL.
pub(crate) fn to_strings(perms: &[Perm]) -> alloc::vec::Vec<u8> {
    use core::fmt::Write;
    let mut s = String::new();
    for p in perms {
        // Writing to a String cannot fail.
        let _ = write!(s, "{p}\0");
    }
    s.into_bytes()
}

/// Who performs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    pub domid: u16,
    /// The domain this caller serves as device model (`XS_SET_TARGET`).
    pub target: Option<u16>,
}

impl Caller {
    pub fn new(domid: u16, target: Option<u16>) -> Caller {
        Caller { domid, target }
    }

    /// dom0 is the only privileged domain (C's `priv_domid` defaults to 0 too).
    pub fn privileged(&self) -> bool {
        self.domid == 0
    }

    fn is(&self, domid: u16) -> bool {
        domid == self.domid || self.target == Some(domid)
    }
}

/// What a caller may do with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Rights {
    pub read: bool,
    pub write: bool,
    /// May change the permissions.
    pub owner: bool,
}

impl Rights {
    const ALL: Rights = Rights {
        read: true,
        write: true,
        owner: true,
    };

    /// True if every right in `need` is granted.
    pub fn covers(self, need: Rights) -> bool {
        (self.read || !need.read) && (self.write || !need.write) && (self.owner || !need.owner)
    }

    /// True if any right in `need` is granted (C's `parent_perm & perm`).
    pub fn any_of(self, need: Rights) -> bool {
        (self.read && need.read) || (self.write && need.write) || (self.owner && need.owner)
    }
}

pub(crate) const READ: Rights = Rights {
    read: true,
    write: false,
    owner: false,
};
pub(crate) const WRITE: Rights = Rights {
    read: false,
    write: true,
    owner: false,
};
pub(crate) const WRITE_OWNER: Rights = Rights {
    read: false,
    write: true,
    owner: true,
};

/// The rights `caller` has on a node with permission list `perms`.
pub(crate) fn rights(caller: Caller, perms: &[Perm]) -> Rights {
    let Some((owner, others)) = perms.split_first() else {
        return if caller.privileged() {
            Rights::ALL
        } else {
            Rights::default()
        };
    };
    if caller.privileged() || caller.is(owner.domid) {
        return Rights::ALL;
    }
    let access = others
        .iter()
        .find(|p| caller.is(p.domid))
        .unwrap_or(owner)
        .access;
    Rights {
        read: access.can_read(),
        write: access.can_write(),
        owner: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn parse_and_print() {
        assert_eq!(Perm::parse(b"r5"), Ok(Perm::new(Access::Read, 5)));
        assert_eq!(Perm::parse(b"b65535"), Ok(Perm::new(Access::Both, 65535)));
        for bad in [
            &b""[..],
            b"r",
            b"x1",
            b"r-1",
            b"r65536",
            b"r1a",
            b"R1",
            b"r 1",
            b"r000001",
        ] {
            assert_eq!(Perm::parse(bad), Err(XsError::EINVAL), "{bad:?}");
        }
        assert_eq!(Perm::new(Access::None, 0).to_string(), "n0");
        let list = vec![Perm::new(Access::None, 0), Perm::new(Access::Write, 3)];
        assert_eq!(to_strings(&list), b"n0\0w3\0");
    }

    #[test]
    fn rights_rules() {
        let perms = [
            Perm::new(Access::Read, 1),
            Perm::new(Access::None, 2),
            Perm::new(Access::Write, 3),
        ];
        let r = |d, t| rights(Caller::new(d, t), &perms);
        assert_eq!(r(0, None), Rights::ALL);
        assert_eq!(r(1, None), Rights::ALL);
        assert_eq!(r(2, None), Rights::default());
        assert_eq!(r(3, None), WRITE);
        assert_eq!(r(4, None), READ);
        // A device model for domain 1 acts as its owner.
        assert_eq!(r(9, Some(1)), Rights::ALL);
        assert!(WRITE_OWNER.any_of(WRITE));
        assert!(!READ.covers(WRITE));
    }
}
