//! TCP/IP for appliances: smoltcp over this domain's first vif (netfront from
//! drivers-front, `device/vif/0`), with async TCP and UDP sockets on the libos
//! executor ([`TcpListener`], [`TcpStream`], [`UdpSocket`]).
//!
//! ```ignore
//! let net = net::up().await?;          // handshake, address from the store or DHCP
//! let mut l = net::TcpListener::bind(80)?;
//! loop {
//!     let mut s = l.accept().await;
//!     executor::spawn(async move { /* s.read(..).await, s.write_all(..).await */ });
//! }
//! ```
//!
//! The address comes from the toolstack: the back end's `ip` node (libxl's, as
//! Mini-OS's netfront reads it: `A.B.C.D` or `A.B.C.D/len`, /24 if no length) and our
//! extension `gateway`; with no `ip`, DHCP (smoltcp's DHCPv4 socket). One daemon task
//! drives the stack: it polls the interface when the vif's event channel fires, when
//! smoltcp's next timer is due, or when a socket operation asked it to ([`kick`]);
//! otherwise it is blocked with the rest of the executor: idle means blocked in the
//! hypervisor, never polling.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Poll, Waker};
use core::time::Duration;

use drivers_front::netfront;
use drivers_front::netfront::device::NetDevice;
pub use drivers_front::netfront::Config as FrontConfig;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::wire::{EthernetAddress, IpCidr};
pub use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use spin::Mutex;
use xenbus::Store;

use crate::executor;
use crate::platform::Xen;
use crate::time;
use crate::timer;
use crate::xenbus as store;

/// Bytes buffered per TCP socket, each way.
pub const TCP_BUFFER: usize = 32 * 1024;
/// Listening sockets per [`TcpListener`]: connections that can be half-open at once.
pub const BACKLOG: usize = 32;

/// Why the network did not come up, or a socket operation failed.
#[derive(Debug)]
pub enum Error {
    /// No vif, or its handshake failed.
    Vif(netfront::Error),
    /// The store is not reachable.
    Store(xenbus::XsError),
    /// The toolstack's `ip` node is not an address.
    BadAddress(String),
    /// [`up`] has not run.
    Down,
    /// The port is in use, or the socket could not be made.
    Bind,
    /// The connection was reset or closed by the peer before the operation.
    Closed,
}

/// How the interface got its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    Static(Ipv4Cidr),
    Dhcp,
}

struct Inner {
    iface: Interface,
    sockets: SocketSet<'static>,
    dev: NetDevice<Xen>,
    dhcp: Option<SocketHandle>,
    /// Streams dropped before they were closed: they finish closing here, then go.
    orphans: Vec<SocketHandle>,
    ports: (u32, u32),
    mac: [u8; 6],
}

struct Stack(Mutex<Option<Inner>>);
// SAFETY: libos runs on one vCPU and the stack is only touched by tasks (never by an
// event handler), so its contents are never reached from two contexts at once.
unsafe impl Sync for Stack {}

static STACK: Stack = Stack(Mutex::new(None));
/// A socket operation wants the driver to poll and recompute its timer.
static KICKED: AtomicBool = AtomicBool::new(false);
static DRIVER: Mutex<Option<Waker>> = Mutex::new(None);

fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(time::now().as_nanos() as i64 / 1000)
}

fn with<R>(f: impl FnOnce(&mut Inner) -> R) -> Result<R, Error> {
    let mut g = STACK.0.lock();
    g.as_mut().map(f).ok_or(Error::Down)
}

/// Asks the driver task to poll the interface soon (after a socket operation).
pub fn kick() {
    KICKED.store(true, Ordering::SeqCst);
    if let Some(w) = DRIVER.lock().take() {
        w.wake();
    }
}

impl Inner {
    /// One round of the stack: answers from the back end, then smoltcp.
    fn poll(&mut self) {
        let _ = self.dev.front().poll();
        let t = now();
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        if let Some(h) = self.dhcp {
            let event = self.sockets.get_mut::<dhcpv4::Socket>(h).poll();
            match event {
                Some(dhcpv4::Event::Configured(c)) => {
                    self.iface.update_ip_addrs(|a| {
                        a.clear();
                        let _ = a.push(IpCidr::Ipv4(c.address));
                    });
                    if let Some(r) = c.router {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                    }
                    log::info!("net: DHCP gave {} router {:?}", c.address, c.router);
                }
                Some(dhcpv4::Event::Deconfigured) => {
                    self.iface.update_ip_addrs(|a| a.clear());
                    self.iface.routes_mut().remove_default_ipv4_route();
                }
                None => {}
            }
        }
        // The buffers the stack handed back are posted again now: a back end holding
        // packets for us waits for them, and would otherwise wait for our next event.
        let _ = self.dev.front().poll();
        // Orphaned streams that finished closing.
        let sockets = &mut self.sockets;
        self.orphans.retain(|&h| {
            let closed = sockets.get::<tcp::Socket>(h).state() == tcp::State::Closed;
            if closed {
                sockets.remove(h);
            }
            !closed
        });
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        let _ = self.dev.front().poll();
    }
}

/// The address in the toolstack's `ip` node (`A.B.C.D` or `A.B.C.D/len`).
fn parse_ip(s: &str) -> Option<Ipv4Cidr> {
    let s = s.trim();
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse().ok()?),
        None => (s, 24),
    };
    if len > 32 {
        return None;
    }
    Some(Ipv4Cidr::new(a.parse().ok()?, len))
}

/// Brings up vif 0: handshake, address, the driver task. Returns our MAC and how we
/// are addressed (a DHCP lease comes later: [`address`]).
pub async fn up() -> Result<([u8; 6], Addressing), Error> {
    up_with(FrontConfig::default()).await
}

/// [`up`] with the vif negotiating what `cfg` asks (`Config { sg: false, gso: false,
/// csum: false, .. }` is a front end that asks for no offload at all).
pub async fn up_with(cfg: FrontConfig) -> Result<([u8; 6], Addressing), Error> {
    let xs = store::store().map_err(Error::Store)?;
    let (front, mac) = netfront::connect(xs, Xen, 0, cfg)
        .await
        .map_err(Error::Vif)?;
    let backend = xs
        .read(xenbus::NO_TX, "device/vif/0/backend")
        .await
        .map_err(Error::Store)?;
    let backend = String::from_utf8_lossy(&backend).into_owned();
    let node = |n: &str| alloc::format!("{backend}/{n}");
    let ip = match xs.read(xenbus::NO_TX, &node("ip")).await {
        Ok(v) => {
            let s = String::from_utf8_lossy(&v).into_owned();
            Some(parse_ip(&s).ok_or(Error::BadAddress(s))?)
        }
        Err(_) => None,
    };
    let gateway: Option<Ipv4Address> = match xs.read(xenbus::NO_TX, &node("gateway")).await {
        Ok(v) => String::from_utf8_lossy(&v).trim().parse().ok(),
        Err(_) => None,
    };
    let ports = front.ports();
    let mut dev = NetDevice::new(front);
    let mut cfg = Config::new(EthernetAddress(mac).into());
    cfg.random_seed = time::now().as_nanos()
        ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
    let mut iface = Interface::new(cfg, &mut dev, now());
    let mut sockets = SocketSet::new(Vec::new());
    let (addressing, dhcp) = match ip {
        Some(cidr) => {
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::Ipv4(cidr));
            });
            if let Some(g) = gateway {
                let _ = iface.routes_mut().add_default_ipv4_route(g);
            }
            (Addressing::Static(cidr), None)
        }
        None => (Addressing::Dhcp, Some(sockets.add(dhcpv4::Socket::new()))),
    };
    *STACK.0.lock() = Some(Inner {
        iface,
        sockets,
        dev,
        dhcp,
        orphans: Vec::new(),
        ports,
        mac,
    });
    executor::spawn_daemon(driver());
    Ok((mac, addressing))
}

/// Our IPv4 address now (`None` while DHCP has not answered).
pub fn address() -> Option<Ipv4Cidr> {
    with(|n| {
        n.iface.ip_addrs().iter().find_map(|a| match a {
            IpCidr::Ipv4(c) => Some(*c),
            _ => None,
        })
    })
    .ok()
    .flatten()
}

/// The vif's counters: (netfront's, packets that failed their checksum).
pub fn stats() -> Option<(netfront::Stats, u64)> {
    with(|n| (n.dev.front().stats(), n.dev.bad_checksums())).ok()
}

/// How many TCP sockets are in each state, as `(state name, count)` (for `/stats`).
pub fn tcp_states() -> Vec<(&'static str, usize)> {
    let mut out: Vec<(&'static str, usize)> = Vec::new();
    let _ = with(|n| {
        for (_, s) in n.sockets.iter() {
            if let smoltcp::socket::Socket::Tcp(t) = s {
                let name = match t.state() {
                    tcp::State::Closed => "closed",
                    tcp::State::Listen => "listen",
                    tcp::State::SynSent => "syn_sent",
                    tcp::State::SynReceived => "syn_received",
                    tcp::State::Established => "established",
                    tcp::State::FinWait1 => "fin_wait1",
                    tcp::State::FinWait2 => "fin_wait2",
                    tcp::State::CloseWait => "close_wait",
                    tcp::State::Closing => "closing",
                    tcp::State::LastAck => "last_ack",
                    tcp::State::TimeWait => "time_wait",
                };
                match out.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, c)) => *c += 1,
                    None => out.push((name, 1)),
                }
            }
        }
    });
    out
}

/// Waits until the interface has an address (at once for a static one).
pub async fn wait_address(timeout: Duration) -> Option<Ipv4Cidr> {
    executor::with_timeout(timeout, async {
        loop {
            if let Some(a) = address() {
                return a;
            }
            timer::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .ok()
}

/// The daemon that drives the stack.
async fn driver() {
    let (tx_port, rx_port) = with(|n| n.ports).unwrap_or((0, 0));
    loop {
        let delay = with(|n| {
            n.poll();
            let d = n.iface.poll_delay(now(), &n.sockets);
            // "Now" because a socket has something to send, while every transmit
            // buffer is in flight: the back end's answer (an event) is what frees one.
            // Waiting for it rather than polling again at once leaves the CPU to dom0,
            // which must run to answer.
            let full = !n.dev.can_send();
            match d {
                Some(d) if full && d.total_micros() == 0 => None,
                d => d,
            }
        })
        .ok()
        .flatten();
        KICKED.store(false, Ordering::SeqCst);
        let mut tx = pin!(executor::wait_event(tx_port));
        let mut rx = pin!(executor::wait_event(rx_port));
        let d = delay
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_secs(60));
        let mut sleep = pin!(timer::sleep(d));
        poll_fn(|cx| {
            *DRIVER.lock() = Some(cx.waker().clone());
            if KICKED.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            let mut ready = tx.as_mut().poll(cx).is_ready();
            if rx_port != tx_port {
                ready |= rx.as_mut().poll(cx).is_ready();
            }
            ready |= sleep.as_mut().poll(cx).is_ready();
            if ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

fn new_tcp() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
    );
    s.set_nagle_enabled(false);
    s
}

/// A TCP port we accept connections on.
pub struct TcpListener {
    port: u16,
    backlog: Vec<SocketHandle>,
}

impl TcpListener {
    /// Listens on `port` (every address of the interface).
    pub fn bind(port: u16) -> Result<TcpListener, Error> {
        let backlog = with(|n| {
            let mut v = Vec::with_capacity(BACKLOG);
            for _ in 0..BACKLOG {
                let mut s = new_tcp();
                if s.listen(port).is_err() {
                    return Err(Error::Bind);
                }
                v.push(n.sockets.add(s));
            }
            Ok(v)
        })??;
        kick();
        Ok(TcpListener { port, backlog })
    }

    /// The next connection: one of the listening sockets that got past the
    /// handshake, replaced by a fresh one.
    pub async fn accept(&mut self) -> TcpStream {
        poll_fn(|cx| {
            let r = with(|n| {
                for (i, &h) in self.backlog.iter().enumerate() {
                    let s = n.sockets.get_mut::<tcp::Socket>(h);
                    if s.state() != tcp::State::Listen && s.state() != tcp::State::SynReceived {
                        let mut fresh = new_tcp();
                        let _ = fresh.listen(self.port);
                        self.backlog[i] = n.sockets.add(fresh);
                        return Some(h);
                    }
                    s.register_recv_waker(cx.waker());
                }
                None
            });
            match r {
                Ok(Some(h)) => Poll::Ready(TcpStream { handle: h }),
                _ => Poll::Pending,
            }
        })
        .await
    }
}

/// A TCP connection.
pub struct TcpStream {
    handle: SocketHandle,
}

impl TcpStream {
    /// Connects to `addr:port` from an ephemeral port.
    pub async fn connect(addr: Ipv4Address, port: u16) -> Result<TcpStream, Error> {
        static NEXT: Mutex<u16> = Mutex::new(49152);
        let local = {
            let mut p = NEXT.lock();
            *p = if *p == u16::MAX { 49152 } else { *p + 1 };
            *p
        };
        let handle = with(|n| {
            let mut s = new_tcp();
            let cx = n.iface.context();
            s.connect(cx, (IpAddress::Ipv4(addr), port), local)
                .map_err(|_| Error::Bind)?;
            Ok(n.sockets.add(s))
        })??;
        kick();
        let stream = TcpStream { handle };
        poll_fn(|cx| {
            let st = with(|n| {
                let s = n.sockets.get_mut::<tcp::Socket>(handle);
                s.register_send_waker(cx.waker());
                s.state()
            });
            match st {
                Ok(tcp::State::Established) => Poll::Ready(Ok(())),
                Ok(tcp::State::SynSent | tcp::State::SynReceived) => Poll::Pending,
                _ => Poll::Ready(Err(Error::Closed)),
            }
        })
        .await?;
        Ok(stream)
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<IpEndpoint> {
        with(|n| n.sockets.get::<tcp::Socket>(self.handle).remote_endpoint())
            .ok()
            .flatten()
    }

    /// Reads what has arrived, waiting for at least a byte; `Ok(0)` at the end of the
    /// peer's stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let h = self.handle;
        let r = poll_fn(|cx| {
            let r = with(|n| {
                let s = n.sockets.get_mut::<tcp::Socket>(h);
                if s.can_recv() {
                    return Poll::Ready(s.recv_slice(buf).map_err(|_| Error::Closed));
                }
                if !s.may_recv() {
                    return Poll::Ready(Ok(0));
                }
                s.register_recv_waker(cx.waker());
                Poll::Pending
            });
            r.unwrap_or(Poll::Ready(Err(Error::Down)))
        })
        .await;
        // Reading opened the window: tell the peer.
        kick();
        r
    }

    /// Writes what fits in the socket's buffer, waiting for room for at least a byte.
    pub async fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        let h = self.handle;
        let r = poll_fn(|cx| {
            let r = with(|n| {
                let s = n.sockets.get_mut::<tcp::Socket>(h);
                if !s.may_send() {
                    return Poll::Ready(Err(Error::Closed));
                }
                if s.can_send() {
                    let r = s.send_slice(data).map_err(|_| Error::Closed);
                    // Out at once rather than at the driver's next round.
                    n.iface.poll(now(), &mut n.dev, &mut n.sockets);
                    return Poll::Ready(r);
                }
                s.register_send_waker(cx.waker());
                Poll::Pending
            });
            r.unwrap_or(Poll::Ready(Err(Error::Down)))
        })
        .await;
        kick();
        r
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Sends our FIN: we send no more, the peer may (a half-close).
    pub fn shutdown(&mut self) {
        let _ = with(|n| n.sockets.get_mut::<tcp::Socket>(self.handle).close());
        kick();
    }

    /// Sends our FIN and waits (up to `timeout`) for the connection to finish.
    pub async fn close(self, timeout: Duration) {
        let h = self.handle;
        core::mem::forget(self);
        let _ = with(|n| n.sockets.get_mut::<tcp::Socket>(h).close());
        kick();
        let done = executor::with_timeout(
            timeout,
            poll_fn(|cx| {
                let st = with(|n| {
                    let s = n.sockets.get_mut::<tcp::Socket>(h);
                    s.register_send_waker(cx.waker());
                    s.state()
                });
                match st {
                    Ok(tcp::State::Closed | tcp::State::TimeWait) | Err(_) => Poll::Ready(()),
                    Ok(_) => Poll::Pending,
                }
            }),
        )
        .await;
        let _ = with(|n| {
            if done.is_err() {
                n.sockets.get_mut::<tcp::Socket>(h).abort();
            }
            n.orphans.push(h);
        });
        kick();
    }
}

impl Drop for TcpStream {
    /// Closes in the background.
    fn drop(&mut self) {
        let h = self.handle;
        let _ = with(|n| {
            n.sockets.get_mut::<tcp::Socket>(h).close();
            n.orphans.push(h);
        });
        kick();
    }
}

/// A UDP socket.
pub struct UdpSocket {
    handle: SocketHandle,
}

impl UdpSocket {
    /// Binds `port` (with room for 16 datagrams each way).
    pub fn bind(port: u16) -> Result<UdpSocket, Error> {
        let handle = with(|n| {
            let meta = || vec![udp::PacketMetadata::EMPTY; 16];
            let mut s = udp::Socket::new(
                udp::PacketBuffer::new(meta(), vec![0u8; 16 * 1536]),
                udp::PacketBuffer::new(meta(), vec![0u8; 16 * 1536]),
            );
            s.bind(port).map_err(|_| Error::Bind)?;
            Ok(n.sockets.add(s))
        })??;
        Ok(UdpSocket { handle })
    }

    /// Sends one datagram, waiting for room.
    pub async fn send_to(&self, data: &[u8], to: IpEndpoint) -> Result<(), Error> {
        let h = self.handle;
        let r = poll_fn(|cx| {
            with(|n| {
                let s = n.sockets.get_mut::<udp::Socket>(h);
                if s.can_send() {
                    return Poll::Ready(s.send_slice(data, to).map_err(|_| Error::Bind));
                }
                s.register_send_waker(cx.waker());
                Poll::Pending
            })
            .unwrap_or(Poll::Ready(Err(Error::Down)))
        })
        .await;
        kick();
        r
    }

    /// The next datagram: its length (cut to `buf`) and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, IpEndpoint), Error> {
        let h = self.handle;
        poll_fn(|cx| {
            with(|n| {
                let s = n.sockets.get_mut::<udp::Socket>(h);
                if s.can_recv() {
                    return Poll::Ready(
                        s.recv_slice(buf)
                            .map(|(len, meta)| (len, meta.endpoint))
                            .map_err(|_| Error::Closed),
                    );
                }
                s.register_recv_waker(cx.waker());
                Poll::Pending
            })
            .unwrap_or(Poll::Ready(Err(Error::Down)))
        })
        .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let h = self.handle;
        let _ = with(|n| n.sockets.remove(h));
    }
}

/// Our MAC (after [`up`]).
pub fn mac() -> Option<[u8; 6]> {
    with(|n| n.mac).ok()
}
