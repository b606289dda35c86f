//! Random request streams: xenstored never panics, answers every request exactly once,
//! keeps its tree consistent, and never shows a domU a node it may not read.

mod common;
use common::*;
use drivers_back::xenstore::Xenstored;
use proptest::prelude::*;
use pv_core::xs_wire::{self, MsgType};

const SECRET: &[u8] = b"TOPSECRET";

const PATHS: &[&str] = &[
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
];
const PERMS: &[&str] = &["n1", "r2", "b0", "w1", "b2", "r1", "x", "n2"];

#[derive(Debug, Clone)]
enum Step {
    Wire {
        dom: u16,
        ty: u32,
        tx: u8,
        path: usize,
        arg: u8,
        value: Vec<u8>,
        split: usize,
    },
    Garbage {
        dom: u16,
        ty: u32,
        tx: u8,
        payload: Vec<u8>,
    },
    Dom0 {
        op: u8,
        path: usize,
        value: Vec<u8>,
    },
    Cycle {
        dom: u16,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u16..3, 0u32..24, 0u8..4, 0..PATHS.len(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..20), any::<usize>())
            .prop_map(|(dom, ty, tx, path, arg, value, split)| Step::Wire { dom, ty, tx, path, arg, value, split }),
        2 => (1u16..3, 0u32..30, 0u8..4, proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(dom, ty, tx, payload)| Step::Garbage { dom, ty, tx, payload }),
        2 => (0u8..5, 0..PATHS.len(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(op, path, value)| Step::Dom0 { op, path, value }),
        1 => (1u16..3).prop_map(|dom| Step::Cycle { dom }),
    ]
}

struct World {
    xs: Xenstored,
    /// Last transaction id each domain got.
    last_tx: [u32; 3],
    req_id: u32,
}

impl World {
    fn tx(&self, dom: u16, sel: u8) -> u32 {
        match sel {
            0 | 1 => 0,
            2 => self.last_tx[dom as usize],
            _ => 0x7777,
        }
    }

    fn payload(&self, ty: MsgType, path: &str, arg: u8, value: &[u8]) -> Vec<u8> {
        let p = path.as_bytes();
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
            MsgType::Introduce => args(&[(arg % 4).to_string().as_bytes(), b"5", b"3"]),
            MsgType::Release
            | MsgType::Resume
            | MsgType::GetDomainPath
            | MsgType::IsDomainIntroduced => args(&[(arg % 4).to_string().as_bytes()]),
            MsgType::SetTarget => args(&[(arg % 4).to_string().as_bytes(), b"1"]),
            _ => args(&[p]),
        }
    }

    /// Sends one request split in two and checks it gets exactly one reply.
    fn send(&mut self, dom: u16, ty: MsgType, tx: u32, payload: &[u8], split: usize) {
        if !self.xs.is_introduced(dom) {
            return;
        }
        self.req_id += 1;
        let bytes = xs_wire::encode(ty, self.req_id, tx, payload).unwrap();
        let cut = split % (bytes.len() + 1);
        self.xs.receive(dom, &bytes[..cut]).unwrap();
        self.xs.receive(dom, &bytes[cut..]).unwrap();
        if !self.xs.is_introduced(dom) {
            return; // It released itself (not possible for dom0's own id here).
        }
        let out = self.xs.take_output(dom, usize::MAX);
        if dom != 0 {
            assert!(
                !out.windows(SECRET.len()).any(|w| w == SECRET),
                "secret leaked to {dom}"
            );
        }
        let msgs = parse_all(&out);
        let replies: Vec<_> = msgs
            .iter()
            .filter(|m| m.header.ty != MsgType::WatchEvent)
            .collect();
        assert_eq!(replies.len(), 1, "{ty:?}: {msgs:?}");
        let r = replies[0];
        assert_eq!((r.header.req_id, r.header.tx_id), (self.req_id, tx));
        if ty == MsgType::TransactionStart && r.header.ty == MsgType::TransactionStart {
            let id = std::str::from_utf8(&r.payload[..r.payload.len() - 1]).unwrap();
            self.last_tx[dom as usize] = id.parse().unwrap();
        }
    }

    fn drain_others(&mut self) {
        for d in [0u16, 1, 2] {
            let out = self.xs.take_output(d, usize::MAX);
            if d != 0 {
                assert!(!out.windows(SECRET.len()).any(|w| w == SECRET));
            }
            // Only events can be waiting: every reply was taken with its request.
            for m in parse_all(&out) {
                event_of(&m);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_streams(steps in proptest::collection::vec(step(), 1..60)) {
        let mut w = World { xs: store(), last_tx: [0; 3], req_id: 0 };
        w.xs.write(0, "/tool/secret", SECRET).unwrap();
        for s in steps {
            match s {
                Step::Wire { dom, ty, tx, path, arg, value, split } => {
                    let ty = MsgType::from_raw(ty);
                    let tx = w.tx(dom, tx);
                    let payload = w.payload(ty, PATHS[path], arg, &value);
                    // dom0 may do anything: keep it away from the secret (and the root).
                    if dom == 0 && (PATHS[path].starts_with("/tool") || PATHS[path] == "/") {
                        continue;
                    }
                    // dom0 releasing or resetting itself would end the check early.
                    let own = format!("{dom}\0");
                    if dom == 0 && matches!(ty, MsgType::Release | MsgType::Introduce) && payload.starts_with(own.as_bytes()) {
                        continue;
                    }
                    w.send(dom, ty, tx, &payload, split);
                }
                Step::Garbage { dom, ty, tx, payload } => {
                    let tx = w.tx(dom, tx);
                    w.send(dom, MsgType::from_raw(ty), tx, &payload, 3);
                }
                Step::Dom0 { op, path, value } => {
                    let p = PATHS[path];
                    if p.starts_with("/tool") || p == "/" {
                        continue; // keep the secret where only dom0 can read it
                    }
                    let _ = match op {
                        0 => w.xs.write(0, p, &value).map(drop),
                        1 => w.xs.mkdir(0, p),
                        2 => w.xs.rm(0, p),
                        3 => w.xs.read(0, p).map(drop),
                        _ => w.xs.directory(0, p).map(drop),
                    };
                }
                Step::Cycle { dom } => {
                    w.xs.release(dom);
                    w.last_tx[dom as usize] = 0;
                    add_domain(&mut w.xs, dom);
                }
            }
            w.drain_others();
            prop_assert_eq!(w.xs.check_invariants(), Ok(()));
            prop_assert_eq!(w.xs.read(0, "/tool/secret"), Ok(SECRET.to_vec()));
        }
    }
}
