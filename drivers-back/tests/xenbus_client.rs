//! The `xenbus` crate's client against the real xenstored: a domU's client over its
//! store ring on the in-memory platform (dom0 pumping the ring in another thread, as
//! examples/dom0 does), and dom0's own client over the in-process [`Loopback`].

mod common;

use core::future::Future;
use core::pin::{pin, Pin};
use core::task::{Context, Poll};
use drivers_back::xenstore::{Loopback, Xenstored, XsError};
use pv_core::byte_ring::ByteRing;
use pv_core::mem_platform::{MemDomain, MemWorld};
use pv_core::platform::{EventChannel, ForeignMemory, GrantTable, Port, SharePage};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Wake;
use std::thread;
use std::time::{Duration, Instant};
use xen_sys::{xenstore_domain_interface, GNTTAB_RESERVED_XENSTORE};
use xenbus::transport::RingTransport;
use xenbus::{Client, Store, Tx, Watch, NO_TX};

struct NoWake;
impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    let waker = Arc::new(NoWake).into();
    f.poll(&mut Context::from_waker(&waker))
}

/// Runs `f`, sleeping on `port` between polls; a test that hangs fails after 10 s.
fn block_on<F: Future>(dom: &MemDomain, port: Port, f: F) -> F::Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = poll(f.as_mut()) {
            return v;
        }
        assert!(Instant::now() < deadline, "the store did not answer");
        dom.wait_timeout(port, Duration::from_millis(5));
    }
}

/// Moves bytes between domain `id`'s store ring and xenstored, as dom0's loop does.
/// Returns whether any moved.
fn pump_ring(xs: &RefCell<Xenstored>, id: u16, ring: &impl SharePage) -> bool {
    let page = ring.page();
    let mut buf = [0u8; 256];
    let mut moved = false;
    loop {
        let n = ByteRing::STORE_REQ.read(&page, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        xs.borrow_mut().receive(id, &buf[..n]).unwrap();
        moved = true;
    }
    let space = ByteRing::STORE_RSP.space(&page).unwrap();
    let out = xs.borrow_mut().take_output(id, space);
    moved |= !out.is_empty();
    assert_eq!(ByteRing::STORE_RSP.write(&page, &out).unwrap(), out.len());
    moved
}

/// A domU as the toolstack builds it: its store page granted to dom0 in the reserved
/// entry, a port left unbound for dom0.
fn domu(w: &Arc<MemWorld>, id: u16) -> (MemDomain, pv_core::mem_platform::MemPage, Port) {
    let dom = w.domain(id);
    let page = dom.alloc_page().unwrap();
    dom.grant_at(GNTTAB_RESERVED_XENSTORE, 0, &page, false)
        .unwrap();
    let port = dom.alloc_unbound(0).unwrap();
    (dom, page, port)
}

/// The domU's side: what a front-end driver does with the store.
async fn domu_script(xs: &impl Store) -> Result<(), XsError> {
    assert_eq!(xs.read_string(NO_TX, "domid").await?, "1");
    assert_eq!(xs.get_domain_path(1).await?, "/local/domain/1");
    xs.write(NO_TX, "data/greeting", b"hello").await?;
    assert_eq!(xs.read(NO_TX, "data/greeting").await?, b"hello");
    assert_eq!(xs.directory(NO_TX, "data").await?, ["greeting"]);
    let r = xs.read(NO_TX, "/local/domain/0/name").await;
    assert!(matches!(r, Err(XsError::EACCES | XsError::ENOENT)), "{r:?}");
    assert_eq!(
        xs.write(NO_TX, "/local/domain/0/x", b"1").await,
        Err(XsError::EACCES)
    );

    // A watch fires at once, then when dom0 writes the node.
    let mut w = xs.watch("data/ctl").await?;
    assert_eq!(w.next().await?, "data/ctl");
    xs.write(NO_TX, "data/ready", b"1").await?;
    loop {
        let p = w.next().await?;
        assert_eq!(p, "data/ctl");
        if xs.read(NO_TX, "data/ctl").await.ok().as_deref() == Some(b"go") {
            break;
        }
    }
    w.unwatch().await?;

    // A transaction whose node changed under it is refused and writes nothing.
    xs.write(NO_TX, "data/n", b"1").await?;
    let tx: Tx = xs.transaction_start().await?;
    assert_eq!(xs.read(tx, "data/n").await?, b"1");
    xs.write(NO_TX, "data/n", b"5").await?;
    xs.write(tx, "data/n", b"2").await?;
    assert_eq!(xs.transaction_end(tx, true).await, Err(XsError::EAGAIN));
    assert_eq!(xs.read(NO_TX, "data/n").await?, b"5");
    let tx = xs.transaction_start().await?;
    xs.write(tx, "data/n", b"6").await?;
    xs.transaction_end(tx, true).await?;
    assert_eq!(xs.read(NO_TX, "data/n").await?, b"6");
    xs.write(NO_TX, "data/done", b"1").await
}

/// dom0's side, over the loopback: waits for the domU to be ready, tells it to go,
/// waits for it to finish.
async fn dom0_script(xs: &impl Store) -> Result<(), XsError> {
    for (node, then) in [("ready", Some("ctl")), ("done", None)] {
        let path = format!("/local/domain/1/data/{node}");
        let mut w = xs.watch(&path).await?;
        while xs.read(NO_TX, &path).await.ok().as_deref() != Some(b"1") {
            w.next().await?;
        }
        if let Some(then) = then {
            xs.write(NO_TX, &format!("/local/domain/1/data/{then}"), b"go")
                .await?;
        }
    }
    Ok(())
}

#[test]
fn a_domu_client_over_its_ring_and_dom0_over_the_loopback() {
    let w = MemWorld::new();
    let (dom1, page, port) = domu(&w, 1);
    let dom0 = w.domain(0);
    let ring = dom0.map(1, GNTTAB_RESERVED_XENSTORE, false).unwrap();
    let dom0_port = dom0.bind_interdomain(1, port).unwrap();
    let done = Arc::new(AtomicBool::new(false));

    let server_done = done.clone();
    let server = thread::spawn(move || {
        let xs = RefCell::new(Xenstored::new(Default::default()));
        let client = Client::new(Loopback::new(&xs));
        // The toolstack's part, through the same client: the domU's home and domid.
        let setup = async {
            client.mkdir(NO_TX, "/local/domain/1").await?;
            client.set_perms(NO_TX, "/local/domain/1", &["n1"]).await?;
            // Created after the home's permissions: the domU may read it.
            client.write(NO_TX, "/local/domain/1/domid", b"1").await
        };
        assert_eq!(block_on(&dom0, dom0_port, setup), Ok(()));
        xs.borrow_mut().introduce(1).unwrap();
        let mut script = pin!(dom0_script(&client));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if pump_ring(&xs, 1, &ring) {
                dom0.notify(dom0_port);
            }
            if let Poll::Ready(r) = poll(script.as_mut()) {
                assert_eq!(r, Ok(()));
                break;
            }
            assert!(Instant::now() < deadline, "dom0's script did not finish");
            dom0.wait_timeout(dom0_port, Duration::from_millis(5));
        }
        // Serve whatever the domU still sends until it is done.
        while !server_done.load(Ordering::Acquire) {
            if pump_ring(&xs, 1, &ring) {
                dom0.notify(dom0_port);
            }
            dom0.wait_timeout(dom0_port, Duration::from_millis(5));
        }
        xs.borrow().check_invariants().unwrap();
        dom0.unmap(ring).unwrap();
    });

    let client = Client::new(RingTransport::new(page.page(), &dom1, port));
    let r = block_on(&dom1, port, domu_script(&client));
    done.store(true, Ordering::Release);
    server.join().unwrap();
    assert_eq!(r, Ok(()));
    assert!(client.broken().is_none());
}

#[test]
fn a_store_that_corrupts_the_ring_fails_every_request() {
    let w = MemWorld::new();
    let (dom1, page, port) = domu(&w, 1);
    let client = Client::new(RingTransport::new(page.page(), &dom1, port));
    // The "store" claims more reply bytes than the ring holds.
    let rsp_prod = core::mem::offset_of!(xenstore_domain_interface, rsp_prod);
    page.page().store_u32(rsp_prod, 5000);
    assert_eq!(
        block_on(&dom1, port, client.read(NO_TX, "domid")),
        Err(XsError::EIO)
    );
    assert!(client.broken().unwrap().contains("corrupt"));
    assert_eq!(
        block_on(&dom1, port, client.write(NO_TX, "x", b"1")),
        Err(XsError::EIO)
    );
}
