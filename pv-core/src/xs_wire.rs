//! The xenstore wire protocol (`xen/include/public/io/xs_wire.h`): message header,
//! message types, error names and a stream framer.
//!
//! Every xenstore message is a 16-byte `struct xsd_sockmsg` header (type, req_id, tx_id,
//! len, in the byte order of the machine: both ends share memory) followed by `len`
//! payload bytes, `len <= XENSTORE_PAYLOAD_MAX`. Requests and replies travel over the
//! two byte rings of `struct xenstore_domain_interface`, split at arbitrary byte
//! boundaries, so the reader reassembles them with a [`Framer`].
//!
//! Both xenstored (dom0, `drivers-back`) and the guest-side xenbus client use this
//! module: everything here is panic-free on any input and allocates at most one buffer
//! per message.

use alloc::vec::Vec;
use core::fmt;

/// Size of the message header, `sizeof(struct xsd_sockmsg)`.
pub const HEADER_LEN: usize = core::mem::size_of::<xen_sys::xsd_sockmsg>();

/// Largest payload either side may send (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = xen_sys::XENSTORE_PAYLOAD_MAX as usize;

/// Longest absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = xen_sys::XENSTORE_ABS_PATH_MAX as usize;

/// Longest relative path (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = xen_sys::XENSTORE_REL_PATH_MAX as usize;

/// A malformed byte sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer than [`HEADER_LEN`] bytes where a header was expected.
    Truncated,
    /// The header announces a payload longer than `XENSTORE_PAYLOAD_MAX`: a protocol
    /// violation after which the stream cannot be resynchronised.
    PayloadTooLong { len: u32 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => write!(f, "xenstore header truncated"),
            WireError::PayloadTooLong { len } => {
                write!(f, "xenstore payload of {len} bytes exceeds {PAYLOAD_MAX}")
            }
        }
    }
}

/// A message type (`enum xsd_sockmsg_type`). Types this module does not know are kept
/// as [`MsgType::Unknown`] so that a server can still answer them with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// `XS_CONTROL` (formerly `XS_DEBUG`).
    Control,
    Directory,
    Read,
    GetPerms,
    Watch,
    Unwatch,
    TransactionStart,
    TransactionEnd,
    Introduce,
    Release,
    GetDomainPath,
    Write,
    Mkdir,
    Rm,
    SetPerms,
    WatchEvent,
    Error,
    IsDomainIntroduced,
    Resume,
    SetTarget,
    ResetWatches,
    DirectoryPart,
    /// Any other value, preserved.
    Unknown(u32),
}

impl MsgType {
    /// The type named by a header's `type` field.
    pub fn from_raw(raw: u32) -> MsgType {
        use xen_sys::*;
        match raw {
            XS_CONTROL => MsgType::Control,
            XS_DIRECTORY => MsgType::Directory,
            XS_READ => MsgType::Read,
            XS_GET_PERMS => MsgType::GetPerms,
            XS_WATCH => MsgType::Watch,
            XS_UNWATCH => MsgType::Unwatch,
            XS_TRANSACTION_START => MsgType::TransactionStart,
            XS_TRANSACTION_END => MsgType::TransactionEnd,
            XS_INTRODUCE => MsgType::Introduce,
            XS_RELEASE => MsgType::Release,
            XS_GET_DOMAIN_PATH => MsgType::GetDomainPath,
            XS_WRITE => MsgType::Write,
            XS_MKDIR => MsgType::Mkdir,
            XS_RM => MsgType::Rm,
            XS_SET_PERMS => MsgType::SetPerms,
            XS_WATCH_EVENT => MsgType::WatchEvent,
            XS_ERROR => MsgType::Error,
            XS_IS_DOMAIN_INTRODUCED => MsgType::IsDomainIntroduced,
            XS_RESUME => MsgType::Resume,
            XS_SET_TARGET => MsgType::SetTarget,
            XS_RESET_WATCHES => MsgType::ResetWatches,
            XS_DIRECTORY_PART => MsgType::DirectoryPart,
            other => MsgType::Unknown(other),
        }
    }

    /// The value of the header's `type` field.
    pub fn raw(self) -> u32 {
        use xen_sys::*;
        match self {
            MsgType::Control => XS_CONTROL,
            MsgType::Directory => XS_DIRECTORY,
            MsgType::Read => XS_READ,
            MsgType::GetPerms => XS_GET_PERMS,
            MsgType::Watch => XS_WATCH,
            MsgType::Unwatch => XS_UNWATCH,
            MsgType::TransactionStart => XS_TRANSACTION_START,
            MsgType::TransactionEnd => XS_TRANSACTION_END,
            MsgType::Introduce => XS_INTRODUCE,
            MsgType::Release => XS_RELEASE,
            MsgType::GetDomainPath => XS_GET_DOMAIN_PATH,
            MsgType::Write => XS_WRITE,
            MsgType::Mkdir => XS_MKDIR,
            MsgType::Rm => XS_RM,
            MsgType::SetPerms => XS_SET_PERMS,
            MsgType::WatchEvent => XS_WATCH_EVENT,
            MsgType::Error => XS_ERROR,
            MsgType::IsDomainIntroduced => XS_IS_DOMAIN_INTRODUCED,
            MsgType::Resume => XS_RESUME,
            MsgType::SetTarget => XS_SET_TARGET,
            MsgType::ResetWatches => XS_RESET_WATCHES,
            MsgType::DirectoryPart => XS_DIRECTORY_PART,
            MsgType::Unknown(raw) => raw,
        }
    }
}

/// The checked view of a message header (`struct xsd_sockmsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub ty: MsgType,
    pub req_id: u32,
    pub tx_id: u32,
    /// Payload length; at most [`PAYLOAD_MAX`] in a parsed header.
    pub len: u32,
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `bytes`. Refuses a payload length above
    /// `XENSTORE_PAYLOAD_MAX`.
    pub fn parse(bytes: &[u8]) -> Result<Header, WireError> {
        let field = |i: usize| -> Result<u32, WireError> {
            let b = bytes.get(4 * i..4 * i + 4).ok_or(WireError::Truncated)?;
            // Both ends of a xenstore ring are on the same machine: the protocol is in
            // native byte order.
            Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let header = Header {
            ty: MsgType::from_raw(field(0)?),
            req_id: field(1)?,
            tx_id: field(2)?,
            len: field(3)?,
        };
        if header.len as usize > PAYLOAD_MAX {
            return Err(WireError::PayloadTooLong { len: header.len });
        }
        Ok(header)
    }

    /// The header's wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let fields = [self.ty.raw(), self.req_id, self.tx_id, self.len];
        for (chunk, value) in out.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&value.to_ne_bytes());
        }
        out
    }
}

/// A complete message: header and exactly `header.len` payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Encodes one message. Fails only if `payload` is longer than `XENSTORE_PAYLOAD_MAX`.
pub fn encode(ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    if payload.len() > PAYLOAD_MAX {
        // Saturate: the length does not fit the field anyway past 4 GiB.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        return Err(WireError::PayloadTooLong { len });
    }
    let header = Header {
        ty,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The NUL-terminated strings at the start of a payload, in order, without their NULs.
/// Bytes after the last NUL are not yielded (as `get_strings` in C xenstored).
pub fn strings(payload: &[u8]) -> Strings<'_> {
    Strings { rest: payload }
}

/// Iterator returned by [`strings`].
#[derive(Debug, Clone)]
pub struct Strings<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let nul = self.rest.iter().position(|&b| b == 0)?;
        let (s, rest) = self.rest.split_at(nul);
        self.rest = &rest[1..];
        Some(s)
    }
}

/// The protocol's error names, the `XSD_ERRORS` table of `xs_wire.h`. An `XS_ERROR`
/// reply carries the name followed by a NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XsError {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
}

impl XsError {
    /// Every error, in the order of the `XSD_ERRORS` table.
    pub const ALL: [XsError; 16] = [
        XsError::EINVAL,
        XsError::EACCES,
        XsError::EEXIST,
        XsError::EISDIR,
        XsError::ENOENT,
        XsError::ENOMEM,
        XsError::ENOSPC,
        XsError::EIO,
        XsError::ENOTEMPTY,
        XsError::ENOSYS,
        XsError::EROFS,
        XsError::EBUSY,
        XsError::EAGAIN,
        XsError::EISCONN,
        XsError::E2BIG,
        XsError::EPERM,
    ];

    /// The name sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            XsError::EINVAL => "EINVAL",
            XsError::EACCES => "EACCES",
            XsError::EEXIST => "EEXIST",
            XsError::EISDIR => "EISDIR",
            XsError::ENOENT => "ENOENT",
            XsError::ENOMEM => "ENOMEM",
            XsError::ENOSPC => "ENOSPC",
            XsError::EIO => "EIO",
            XsError::ENOTEMPTY => "ENOTEMPTY",
            XsError::ENOSYS => "ENOSYS",
            XsError::EROFS => "EROFS",
            XsError::EBUSY => "EBUSY",
            XsError::EAGAIN => "EAGAIN",
            XsError::EISCONN => "EISCONN",
            XsError::E2BIG => "E2BIG",
            XsError::EPERM => "EPERM",
        }
    }

    /// The error named by `name`, with or without its trailing NUL (the payload of an
    /// `XS_ERROR` reply).
    pub fn parse(name: &[u8]) -> Option<XsError> {
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        XsError::ALL
            .into_iter()
            .find(|e| e.as_str().as_bytes() == name)
    }

    /// The `XS_ERROR` payload: the name and a NUL.
    pub fn payload(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.as_str().len() + 1);
        out.extend_from_slice(self.as_str().as_bytes());
        out.push(0);
        out
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits an `XS_WATCH_EVENT` payload into its path and token (the `XS_WATCH_PATH` and
/// `XS_WATCH_TOKEN` strings).
pub fn watch_event(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut fields = [None, None];
    for (slot, s) in fields.iter_mut().zip(strings(payload)) {
        *slot = Some(s);
    }
    Some((
        fields[xen_sys::XS_WATCH_PATH as usize]?,
        fields[xen_sys::XS_WATCH_TOKEN as usize]?,
    ))
}

/// Reassembles messages from a byte stream fed in pieces of any size.
///
/// After a [`WireError::PayloadTooLong`] the stream is out of sync for good: the framer
/// stays broken and returns the same error from then on (C xenstored ignores such a
/// connection).
#[derive(Debug, Default)]
pub struct Framer {
    header_buf: [u8; HEADER_LEN],
    header_len: usize,
    header: Option<Header>,
    payload: Vec<u8>,
    broken: Option<WireError>,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Consumes bytes from the front of `input` (advancing it) until one message is
    /// complete or `input` is exhausted. Returns the completed message, if any; call
    /// again with the rest of `input` for more.
    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Option<Message>, WireError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        if self.header.is_none() {
            let want = HEADER_LEN - self.header_len;
            let take = want.min(input.len());
            self.header_buf[self.header_len..self.header_len + take]
                .copy_from_slice(&input[..take]);
            self.header_len += take;
            *input = &input[take..];
            if self.header_len < HEADER_LEN {
                return Ok(None);
            }
            match Header::parse(&self.header_buf) {
                Ok(header) => {
                    self.header = Some(header);
                    self.payload = Vec::with_capacity(header.len as usize);
                }
                Err(err) => {
                    self.broken = Some(err);
                    return Err(err);
                }
            }
        }
        let Some(header) = self.header else {
            return Ok(None);
        };
        let want = header.len as usize - self.payload.len();
        let take = want.min(input.len());
        self.payload.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.payload.len() < header.len as usize {
            return Ok(None);
        }
        self.header = None;
        self.header_len = 0;
        Ok(Some(Message {
            header,
            payload: core::mem::take(&mut self.payload),
        }))
    }

    /// Bytes of a partial message held so far.
    pub fn buffered(&self) -> usize {
        self.header_len + self.payload.len()
    }

    /// True after a fatal framing error.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip_and_layout() {
        let h = Header {
            ty: MsgType::Write,
            req_id: 7,
            tx_id: 3,
            len: 5,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], &xen_sys::XS_WRITE.to_ne_bytes());
        assert_eq!(&b[4..8], &7u32.to_ne_bytes());
        assert_eq!(&b[8..12], &3u32.to_ne_bytes());
        assert_eq!(&b[12..16], &5u32.to_ne_bytes());
        assert_eq!(Header::parse(&b), Ok(h));
        assert_eq!(HEADER_LEN, 16);
    }

    #[test]
    fn header_checks() {
        assert_eq!(Header::parse(&[0; 15]), Err(WireError::Truncated));
        let mut h = Header {
            ty: MsgType::Read,
            req_id: 0,
            tx_id: 0,
            len: PAYLOAD_MAX as u32,
        };
        assert!(Header::parse(&h.to_bytes()).is_ok());
        h.len += 1;
        assert_eq!(
            Header::parse(&h.to_bytes()),
            Err(WireError::PayloadTooLong { len: 4097 })
        );
    }

    #[test]
    fn msg_types_round_trip() {
        for raw in 0..40u32 {
            assert_eq!(MsgType::from_raw(raw).raw(), raw);
        }
        assert_eq!(
            MsgType::from_raw(xen_sys::XS_DIRECTORY_PART),
            MsgType::DirectoryPart
        );
        assert_eq!(MsgType::from_raw(20), MsgType::Unknown(20));
        assert_eq!(MsgType::from_raw(u32::MAX), MsgType::Unknown(u32::MAX));
    }

    #[test]
    fn errors() {
        for e in XsError::ALL {
            assert_eq!(XsError::parse(e.as_str().as_bytes()), Some(e));
            assert_eq!(XsError::parse(&e.payload()), Some(e));
        }
        assert_eq!(XsError::EAGAIN.payload(), b"EAGAIN\0");
        assert_eq!(XsError::parse(b"EWHAT"), None);
        assert_eq!(XsError::parse(b""), None);
    }

    #[test]
    fn encode_checks_length() {
        let m = encode(MsgType::Read, 1, 0, b"a\0").unwrap();
        assert_eq!(m.len(), HEADER_LEN + 2);
        assert!(encode(MsgType::Read, 1, 0, &[0; PAYLOAD_MAX]).is_ok());
        assert_eq!(
            encode(MsgType::Read, 1, 0, &[0; PAYLOAD_MAX + 1]),
            Err(WireError::PayloadTooLong {
                len: PAYLOAD_MAX as u32 + 1
            })
        );
    }

    #[test]
    fn strings_like_get_strings() {
        let v: Vec<&[u8]> = strings(b"a\0bc\0tail").collect();
        assert_eq!(v, vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!(strings(b"").count(), 0);
        assert_eq!(strings(b"abc").count(), 0);
        assert_eq!(strings(b"\0").collect::<Vec<_>>(), vec![&b""[..]]);
        assert_eq!(strings(b"\0\0").count(), 2);
        assert_eq!(strings(b"x\0\0").count(), 2);
    }

    #[test]
    fn watch_event_fields() {
        assert_eq!(
            watch_event(b"/a/b\0tok\0"),
            Some((&b"/a/b"[..], &b"tok"[..]))
        );
        assert_eq!(watch_event(b"/a/b\0"), None);
    }

    #[test]
    fn framer_byte_by_byte() {
        let mut stream = encode(MsgType::Write, 1, 0, b"/a\0value").unwrap();
        stream.extend(encode(MsgType::Read, 2, 9, b"").unwrap());
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in &stream {
            let mut input = core::slice::from_ref(b);
            if let Some(m) = f.feed(&mut input).unwrap() {
                got.push(m);
            }
            assert!(input.is_empty());
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload, b"/a\0value");
        assert_eq!(
            got[1].header,
            Header {
                ty: MsgType::Read,
                req_id: 2,
                tx_id: 9,
                len: 0
            }
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn framer_refuses_oversized_for_good() {
        let h = Header {
            ty: MsgType::Write,
            req_id: 0,
            tx_id: 0,
            len: 0,
        };
        let mut bytes = h.to_bytes();
        bytes[12..16].copy_from_slice(&5000u32.to_ne_bytes());
        let mut f = Framer::new();
        let mut input = &bytes[..];
        assert_eq!(
            f.feed(&mut input),
            Err(WireError::PayloadTooLong { len: 5000 })
        );
        assert!(f.is_broken());
        let ok = encode(MsgType::Read, 0, 0, b"").unwrap();
        assert_eq!(
            f.feed(&mut &ok[..]),
            Err(WireError::PayloadTooLong { len: 5000 })
        );
    }

    fn arb_message() -> impl Strategy<Value = (u32, u32, u32, Vec<u8>)> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
    }

    proptest! {
        #[test]
        fn framer_reassembles_any_split(
            msgs in proptest::collection::vec(arb_message(), 0..6),
            cuts in proptest::collection::vec(1usize..64, 0..40),
        ) {
            let mut stream = Vec::new();
            for (ty, req, tx, payload) in &msgs {
                stream.extend(encode(MsgType::from_raw(*ty), *req, *tx, payload).unwrap());
            }
            let mut f = Framer::new();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            let mut cuts = cuts.into_iter().cycle();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(usize::MAX).min(rest.len());
                let mut piece = &rest[..n];
                rest = &rest[n..];
                while !piece.is_empty() {
                    if let Some(m) = f.feed(&mut piece).unwrap() {
                        got.push(m);
                    }
                }
            }
            prop_assert_eq!(got.len(), msgs.len());
            for (m, (ty, req, tx, payload)) in got.iter().zip(&msgs) {
                prop_assert_eq!(m.header.ty.raw(), *ty);
                prop_assert_eq!(m.header.req_id, *req);
                prop_assert_eq!(m.header.tx_id, *tx);
                prop_assert_eq!(&m.payload, payload);
            }
        }

        #[test]
        fn framer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000), step in 1usize..50) {
            let mut f = Framer::new();
            for chunk in bytes.chunks(step) {
                let mut piece = chunk;
                while !piece.is_empty() {
                    match f.feed(&mut piece) {
                        Ok(Some(m)) => prop_assert!(m.payload.len() <= PAYLOAD_MAX),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            }
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Header::parse(&bytes);
            let _ = XsError::parse(&bytes);
            let _ = watch_event(&bytes);
            let joined: Vec<u8> = strings(&bytes).flat_map(|s| s.iter().copied().chain([0])).collect();
            prop_assert!(bytes.starts_with(&joined));
        }
    }
}
