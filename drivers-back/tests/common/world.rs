//! A domU and dom0 around the real xenstored for handshake tests: the domU's store
//! ring on the in-memory platform, dom0 over the loopback, both ends' futures run
//! together with the store pumped between polls.

use core::future::Future;
use core::pin::{pin, Pin};
use core::task::{Context, Poll};
use std::cell::RefCell;
use std::sync::Arc;
use std::task::Wake;
use std::time::{Duration, Instant};

use drivers_back::xenstore::Xenstored;
use pv_core::byte_ring::ByteRing;
use pv_core::mem_platform::{MemDomain, MemPage, MemWorld};
use pv_core::platform::{EventChannel, ForeignMemory, GrantTable, Port, SharePage};
use xen_sys::GNTTAB_RESERVED_XENSTORE;
use xenbus::{Store, NO_TX};

struct NoWake;
impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

pub fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    let waker = Arc::new(NoWake).into();
    f.poll(&mut Context::from_waker(&waker))
}

/// dom0 with xenstored, and domU 1 with its store ring mapped by dom0.
pub struct World {
    pub dom0: MemDomain,
    pub dom1: MemDomain,
    pub page: MemPage,
    pub port: Port,
    pub ring: pv_core::mem_platform::MemMapping,
    pub xs: RefCell<Xenstored>,
    /// The two `state` nodes a hanging handshake is reported with.
    pub states: (String, String),
}

impl World {
    pub fn new(front: &str, back: &str) -> World {
        let w = MemWorld::new();
        let dom1 = w.domain(1);
        let page = dom1.alloc_page().unwrap();
        dom1.grant_at(GNTTAB_RESERVED_XENSTORE, 0, &page, false)
            .unwrap();
        let port = dom1.alloc_unbound(0).unwrap();
        let dom0 = w.domain(0);
        let ring = dom0.map(1, GNTTAB_RESERVED_XENSTORE, false).unwrap();
        dom0.bind_interdomain(1, port).unwrap();
        World {
            dom0,
            dom1,
            page,
            port,
            ring,
            xs: RefCell::new(Xenstored::new(Default::default())),
            states: (format!("{front}/state"), format!("{back}/state")),
        }
    }

    /// Gives domain 1 its home, runs `nodes` (the toolstack's writes, over dom0's
    /// client) and introduces domain 1 to the store.
    pub fn toolstack<F: Future<Output = Result<(), xenbus::XsError>>>(
        &self,
        dom0: &impl Store,
        nodes: F,
    ) {
        let setup = async {
            dom0.mkdir(NO_TX, "/local/domain/1").await?;
            dom0.set_perms(NO_TX, "/local/domain/1", &["n1"]).await?;
            nodes.await
        };
        let mut setup = pin!(setup);
        assert_eq!(poll(setup.as_mut()), Poll::Ready(Ok(())));
        self.xs.borrow_mut().introduce(1).unwrap();
    }

    /// Moves the domU's store bytes both ways.
    pub fn pump(&self) {
        let page = self.ring.page();
        let mut buf = [0u8; 256];
        loop {
            let n = ByteRing::STORE_REQ.read(&page, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            self.xs.borrow_mut().receive(1, &buf[..n]).unwrap();
        }
        let space = ByteRing::STORE_RSP.space(&page).unwrap();
        let out = self.xs.borrow_mut().take_output(1, space);
        ByteRing::STORE_RSP.write(&page, &out).unwrap();
    }

    /// Runs two futures together, pumping the store, until both are done.
    pub fn run<A: Future, B: Future>(&self, a: A, b: B) -> (A::Output, B::Output) {
        let (mut a, mut b) = (pin!(a), pin!(b));
        let (mut ra, mut rb) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ra.is_none() || rb.is_none() {
            if Instant::now() > deadline {
                let mut xs = self.xs.borrow_mut();
                let f = xs.read(0, &self.states.0);
                let b = xs.read(0, &self.states.1);
                panic!(
                    "the handshake hangs: front done {}, back done {}, states {f:?} {b:?}",
                    ra.is_some(),
                    rb.is_some()
                );
            }
            self.pump();
            if ra.is_none() {
                if let Poll::Ready(v) = poll(a.as_mut()) {
                    ra = Some(v);
                }
            }
            if rb.is_none() {
                if let Poll::Ready(v) = poll(b.as_mut()) {
                    rb = Some(v);
                }
            }
            self.dom1
                .wait_timeout(self.port, Duration::from_micros(200));
        }
        (ra.unwrap(), rb.unwrap())
    }
}
