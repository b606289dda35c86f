//! xenstored's request handling (`drivers_back::xenstore::Xenstored`): the input is a
//! program of request streams from dom0 and hostile domUs, with the checks of
//! drivers-back's `tests/xenstore_props.rs` proptest after every step.
//!
//! Input: records, each a control byte `c` and its arguments, by `c % 4`:
//! - 0: raw bytes from domU `1 + (c >> 2) % 3` (u16 length, bytes): any stream, split
//!   anywhere, as a guest writes its request ring;
//! - 1: a well-formed request from domain `(c >> 2) % 3` (dom0 too): type (u8 % 24),
//!   transaction (u8: none, the last one started, or a u32 that follows), path (u8, into
//!   [`PATHS`]), argument (u8), value (u8 length % 32, bytes), split point (u8);
//! - 2: a direct dom0 operation, as the toolstack calls them (u8 op, u8 path, u8 length
//!   % 16, value);
//! - 3: domU `1 + (c >> 2) % 2` dies and a new one comes with the same id.
//!
//! Properties: no panic; `receive` fails exactly when the stream breaks the framing (a
//! payload over the limit) or the domain is not connected; each complete request gets
//! exactly one reply, in order, echoing its request and transaction ids, of its type or
//! an error with a known name; anything else queued is a well-formed watch event; output
//! is whole messages; the tree stays consistent (`check_invariants`) and no domU ever
//! reads dom0's secret node.

use drivers_back::xenstore::{Access, Fatal, Limits, Perm, Xenstored, XsError};
use pv_core::xs_wire::{self, Framer, Message, MsgType, WireError};

use crate::Bytes;

const SECRET: &[u8] = b"TOPSECRET";
const SECRET_PATH: &str = "/tool/secret";

/// Paths of well-formed requests: relative, absolute, special, and malformed ones.
pub const PATHS: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "b",
    "/local/domain/1/x",
    "/local/domain/2/x",
    "/local/domain/2",
    "/local/domain",
    "/tool",
    "/tool/secret",
    "/",
    "@releaseDomain",
    "@introduceDomain",
    "",
    "a//b",
    "a/",
    "/local/domain/1/a/b/c/d/e/f/g/h",
    "device/vbd/768/state",
];
const PERMS: &[&str] = &["n1", "r2", "b0", "w1", "b2", "r1", "x", "n2", "n0", "r3"];
/// dom0, the two domUs of the set-up, and one that dom0 may introduce over the wire.
const DOMS: [u16; 4] = [0, 1, 2, 3];

/// Our side of one domain's connection: the same framing the store does, to know which
/// requests it has completed.
#[derive(Default)]
struct Client {
    framer: Framer,
    broken: bool,
    /// The last transaction id the store gave this domain.
    last_tx: u32,
}

struct World {
    xs: Xenstored,
    clients: [Client; 4],
    req_id: u32,
}

fn args(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

fn add_domain(xs: &mut Xenstored, d: u16) {
    let home = format!("/local/domain/{d}");
    xs.mkdir(0, &home).unwrap();
    xs.set_perms(0, &home, &[Perm::new(Access::None, d)])
        .unwrap();
    xs.introduce(d).unwrap();
}

fn payload(ty: MsgType, path: &str, arg: u8, value: &[u8]) -> Vec<u8> {
    let p = path.as_bytes();
    let dom = (arg % 4).to_string();
    match ty {
        MsgType::Write => {
            let mut v = args(&[p]);
            v.extend_from_slice(value);
            v
        }
        MsgType::SetPerms => {
            let a = PERMS[arg as usize % PERMS.len()].as_bytes();
            let b = PERMS[(arg / 8) as usize % PERMS.len()].as_bytes();
            args(&[p, a, b])
        }
        MsgType::Watch | MsgType::Unwatch => args(&[p, &[b'a' + arg % 3]]),
        MsgType::TransactionStart => b"\0".to_vec(),
        MsgType::TransactionEnd => args(&[if arg.is_multiple_of(2) { b"T" } else { b"F" }]),
        MsgType::DirectoryPart => args(&[p, (arg as u32 * 3).to_string().as_bytes()]),
        MsgType::Introduce => args(&[dom.as_bytes(), b"5", b"3"]),
        MsgType::Release
        | MsgType::Resume
        | MsgType::GetDomainPath
        | MsgType::IsDomainIntroduced => args(&[dom.as_bytes()]),
        MsgType::SetTarget => args(&[dom.as_bytes(), b"1"]),
        _ => args(&[p]),
    }
}

impl World {
    fn new() -> World {
        let mut xs = Xenstored::new(Limits::default());
        xs.introduce(0).unwrap();
        for d in [1, 2] {
            add_domain(&mut xs, d);
        }
        xs.write(0, SECRET_PATH, SECRET).unwrap();
        World {
            xs,
            clients: Default::default(),
            req_id: 0,
        }
    }

    /// Feeds `bytes` to domain `d` and checks what the store answers. Returns the
    /// replies.
    fn send(&mut self, d: u16, bytes: &[u8]) -> Vec<Message> {
        let client = &mut self.clients[d as usize];
        let result = self.xs.receive(d, bytes);
        if !self.xs.is_introduced(d) || client.broken {
            // Nothing was processed: also no output (checked in `drain`).
            assert_eq!(result, Err(Fatal::NotConnected));
            return Vec::new();
        }
        let mut requests = Vec::new();
        let mut input = bytes;
        let mut broke = None;
        while !input.is_empty() {
            match client.framer.feed(&mut input) {
                Ok(Some(m)) => requests.push(m),
                Ok(None) => {}
                Err(WireError::PayloadTooLong { len }) => {
                    broke = Some(len);
                    break;
                }
                Err(e) => panic!("framer: {e:?}"),
            }
        }
        match broke {
            Some(len) => {
                assert_eq!(result, Err(Fatal::PayloadTooLong { len }));
                client.broken = true;
            }
            None => assert_eq!(result, Ok(())),
        }
        let out = self.xs.take_output(d, usize::MAX);
        let replies = self.drain_bytes(d, &out);
        if broke.is_some() {
            // A disconnected domain's queue is dropped, replies and all.
            assert!(replies.is_empty(), "replies after a disconnection");
            return replies;
        }
        assert_eq!(
            replies.len(),
            requests.len(),
            "one reply per request: {replies:?}"
        );
        for (req, rsp) in requests.iter().zip(&replies) {
            let (q, r) = (req.header, rsp.header);
            assert_eq!((r.req_id, r.tx_id), (q.req_id, q.tx_id), "ids not echoed");
            if r.ty == MsgType::Error {
                let e = XsError::parse(&rsp.payload).expect("unknown error name");
                assert_eq!(rsp.payload, e.payload());
            } else {
                assert_eq!(r.ty, q.ty, "reply of another type");
                if q.ty == MsgType::TransactionStart {
                    let id = rsp.payload.strip_suffix(&[0]).expect("tx id without NUL");
                    let id = std::str::from_utf8(id).expect("tx id not text");
                    self.clients[d as usize].last_tx = id.parse().expect("tx id not a number");
                }
            }
        }
        replies
    }

    /// Checks queued output `out` of domain `d`: whole messages, no secret for a domU,
    /// well-formed events. Returns the replies.
    fn drain_bytes(&self, d: u16, out: &[u8]) -> Vec<Message> {
        if d != 0 {
            assert!(
                !out.windows(SECRET.len()).any(|w| w == SECRET),
                "secret leaked to {d}"
            );
        }
        let mut f = Framer::new();
        let mut input = out;
        let mut replies = Vec::new();
        while !input.is_empty() {
            let Some(m) = f.feed(&mut input).expect("xenstored sent a bad message") else {
                continue;
            };
            if m.header.ty == MsgType::WatchEvent {
                assert_eq!((m.header.req_id, m.header.tx_id), (0, 0), "event ids");
                assert!(xs_wire::watch_event(&m.payload).is_some(), "bad event");
            } else {
                replies.push(m);
            }
        }
        assert_eq!(f.buffered(), 0, "partial message in output");
        replies
    }

    /// Outside a domain's own request only events may wait for it.
    fn drain_all(&mut self) {
        for d in DOMS {
            let out = self.xs.take_output(d, usize::MAX);
            let replies = self.drain_bytes(d, &out);
            assert!(replies.is_empty(), "stray replies for {d}: {replies:?}");
        }
    }

    fn reset_client(&mut self, d: u16) {
        self.clients[d as usize] = Client::default();
    }

    fn request(&mut self, d: u16, input: &mut Bytes) {
        let ty = MsgType::from_raw(u32::from(input.u8() % 24));
        let tx = match input.u8() % 4 {
            0 | 1 => 0,
            2 => self.clients[d as usize].last_tx,
            _ => input.u32(),
        };
        let path = PATHS[input.u8() as usize % PATHS.len()];
        let arg = input.u8();
        let len = input.u8() as usize % 32;
        let value = input.take(len);
        let split = input.u8() as usize;
        let payload = payload(ty, path, arg, value);
        if d == 0 {
            // dom0 may do anything: keep it away from the secret (and the root), and
            // from resetting or releasing itself, which would end the check early.
            if path.starts_with("/tool") || path == "/" {
                return;
            }
            if matches!(ty, MsgType::Release | MsgType::Introduce) && payload.starts_with(b"0\0") {
                return;
            }
        }
        self.req_id = self.req_id.wrapping_add(1);
        let bytes = xs_wire::encode(ty, self.req_id, tx, &payload).expect("small payload");
        let cut = split % (bytes.len() + 1);
        let mut replies = self.send(d, &bytes[..cut]);
        replies.extend(self.send(d, &bytes[cut..]));
        // dom0 (re)introducing or releasing a domU resets that domU's connection, if it
        // succeeds (not, say, in a transaction that does not exist).
        let done = replies
            .last()
            .is_some_and(|r| r.header.ty != MsgType::Error);
        if d == 0 && done && matches!(ty, MsgType::Release | MsgType::Introduce) {
            let target = u16::from(arg % 4);
            self.reset_client(target);
        }
    }

    fn dom0_op(&mut self, input: &mut Bytes) {
        let op = input.u8() % 5;
        let p = PATHS[input.u8() as usize % PATHS.len()];
        let len = input.u8() as usize % 16;
        let value = input.take(len);
        if p.starts_with("/tool") || p == "/" {
            return; // keep the secret where only dom0 can read it
        }
        // Failures are answers too; only panics and broken invariants matter here.
        let _ = match op {
            0 => self.xs.write(0, p, value).map(drop),
            1 => self.xs.mkdir(0, p),
            2 => self.xs.rm(0, p),
            3 => self.xs.read(0, p).map(drop),
            _ => self.xs.directory(0, p).map(drop),
        };
    }
}

pub fn check(data: &[u8]) {
    let mut w = World::new();
    let mut input = Bytes::new(data);
    while !input.is_empty() {
        let c = input.u8();
        match c % 4 {
            0 => {
                let d = 1 + u16::from(c >> 2) % 3;
                let len = input.u16() as usize;
                let bytes = input.take(len);
                w.send(d, bytes);
            }
            1 => {
                let d = u16::from(c >> 2) % 3;
                w.request(d, &mut input);
            }
            2 => w.dom0_op(&mut input),
            _ => {
                let d = 1 + u16::from(c >> 2) % 2;
                w.xs.release(d);
                add_domain(&mut w.xs, d);
                w.reset_client(d);
            }
        }
        w.drain_all();
        assert_eq!(w.xs.check_invariants(), Ok(()));
        assert_eq!(w.xs.read(0, SECRET_PATH), Ok(SECRET.to_vec()));
    }
}
