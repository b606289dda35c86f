//! httpd: an HTTP/1.1 server appliance on libos's TCP/IP (smoltcp over netfront).
//!
//! - `GET /`: a static page compiled in (`www/index.html`);
//! - `GET /stats`: the server's and the vif's counters as JSON;
//! - `GET /bytes/N`: N bytes of a fixed pattern (load tests and downloads);
//! - `PUT /kv/KEY` (the body is the value), `GET /kv/KEY`, `DELETE /kv/KEY`: a REST
//!   front of the kvstore appliance, given as `kv=A.B.C.D:PORT` on the command line
//!   (kvstore's `listen=PORT` line protocol over one kept connection): 200 with the
//!   value, 204 once the write is durable (kvstore answers after its flush), 404 for a
//!   missing key, 400 for a key or value that is not one line of text, 502 if kvstore
//!   does not answer;
//! - anything else: 404; another method: 405; a request that does not parse: 400;
//!   headers larger than 8 KiB: 431.
//!
//! Connections are kept alive (HTTP/1.1's default; HTTP/1.0 with
//! `Connection: keep-alive`) and served concurrently, one task each; pipelined
//! requests are answered in order.
//!
//! Command line: `port=N` (default 80). At start it prints
//! `httpd: serving http://A.B.C.D:N/` once it has an address (the toolstack's, or
//! DHCP's).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use libos::net::{self, Addressing, TcpListener, TcpStream};
use libos::{executor, println, start_info, time};

static INDEX: &str = include_str!("../www/index.html");

/// Largest request head we read.
const HEAD_MAX: usize = 8192;
/// Largest request body we take.
const BODY_MAX: usize = 1 << 20;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static ACTIVE: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);

fn arg(name: &str) -> Option<u64> {
    start_info::get()
        .cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// What a request asked, once parsed.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    keep_alive: bool,
    body_len: usize,
}

/// Parses the head at the start of `buf`: `Ok(None)` if it is not complete yet.
fn parse(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    };
    let version = req.version.unwrap_or(1);
    let mut keep_alive = version >= 1;
    let mut body_len = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = core::str::from_utf8(h.value).unwrap_or("");
            if v.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if v.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body_len = core::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(400u16)?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are not taken.
            return Err(501);
        }
    }
    if body_len > BODY_MAX {
        return Err(413);
    }
    Ok(Some((
        Request {
            method: req.method.unwrap_or(""),
            path: req.path.unwrap_or(""),
            keep_alive,
            body_len,
        },
        n,
    )))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        204 => "No Content",
        404 => "Not Found",
        502 => "Bad Gateway",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        _ => "Error",
    }
}

fn head(status: u16, kind: &str, len: usize, keep_alive: bool) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nServer: httpd (libos)\r\nContent-Type: {kind}\r\n\
         Content-Length: {len}\r\nConnection: {}\r\n\r\n",
        reason(status),
        if keep_alive { "keep-alive" } else { "close" }
    )
}

fn stats_json() -> String {
    let (vif, bad) = net::stats().unwrap_or_default();
    let tcp: alloc::vec::Vec<String> = net::tcp_states()
        .iter()
        .map(|(k, n)| format!("\"{k}\":{n}"))
        .collect();
    let mut json = format!(
        "{{\"connections\":{},\"active\":{},\"requests\":{},\"bytes_out\":{},\"errors\":{},\
         \"uptime_ms\":{},\"vif\":{{\"tx_packets\":{},\"tx_bytes\":{},\"rx_packets\":{},\
         \"rx_bytes\":{},\"tx_errors\":{},\"rx_errors\":{},\"bad_checksums\":{}}}}}\n",
        CONNECTIONS.load(Ordering::Relaxed),
        ACTIVE.load(Ordering::Relaxed),
        REQUESTS.load(Ordering::Relaxed),
        BYTES_OUT.load(Ordering::Relaxed),
        ERRORS.load(Ordering::Relaxed),
        time::now().as_nanos() / 1_000_000,
        vif.tx_packets,
        vif.tx_bytes,
        vif.rx_packets,
        vif.rx_bytes,
        vif.tx_errors,
        vif.rx_errors,
        bad,
    );
    // `...}}\n` -> `...},"tcp":{...}}\n`
    json.truncate(json.len() - 2);
    json.push_str(&format!(",\"tcp\":{{{}}}}}\n", tcp.join(",")));
    json
}

/// Answers one request; returns whether the connection stays open.
async fn answer(s: &mut TcpStream, req: &Request<'_>, body: &[u8]) -> Result<bool, net::Error> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let ka = req.keep_alive;
    let headers_only = req.method == "HEAD";
    if let Some(key) = req.path.strip_prefix("/kv/") {
        let (status, text) = kv_request(req.method, key, body).await;
        if status >= 400 {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        send(
            s,
            &head(status, "text/plain", text.len(), ka),
            &text,
            headers_only,
        )
        .await?;
        return Ok(ka);
    }
    if req.method != "GET" && req.method != "HEAD" {
        ERRORS.fetch_add(1, Ordering::Relaxed);
        let body = "method not allowed\n";
        send(
            s,
            &head(405, "text/plain", body.len(), ka),
            body,
            headers_only,
        )
        .await?;
        return Ok(ka);
    }
    let path = req.path.split('?').next().unwrap_or("");
    if path == "/" || path == "/index.html" {
        send(
            s,
            &head(200, "text/html; charset=utf-8", INDEX.len(), ka),
            INDEX,
            headers_only,
        )
        .await?;
    } else if path == "/stats" {
        let body = stats_json();
        send(
            s,
            &head(200, "application/json", body.len(), ka),
            &body,
            headers_only,
        )
        .await?;
    } else if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let head = head(200, "application/octet-stream", n, ka);
        if headers_only {
            s.write_all(head.as_bytes()).await?;
        } else {
            // The head and the first of the body in one write: one segment for a small
            // body, not a segment for the head alone (its own poll of the stack).
            let chunk = pattern();
            let first = n.min(chunk.len().saturating_sub(head.len()));
            let mut out = head.into_bytes();
            out.extend_from_slice(&chunk[..first]);
            s.write_all(&out).await?;
            let mut left = n - first;
            while left > 0 {
                let k = left.min(chunk.len());
                s.write_all(&chunk[..k]).await?;
                left -= k;
            }
            BYTES_OUT.fetch_add(n as u64, Ordering::Relaxed);
        }
    } else {
        ERRORS.fetch_add(1, Ordering::Relaxed);
        let body = "not found\n";
        send(
            s,
            &head(404, "text/plain", body.len(), ka),
            body,
            headers_only,
        )
        .await?;
    }
    Ok(ka)
}

/// `/bytes/N`'s pattern, 16 KiB of the alphabet, made once (on every request it was
/// half of httpd's time under TCG).
fn pattern() -> &'static [u8] {
    static PATTERN: spin::Once<alloc::vec::Vec<u8>> = spin::Once::new();
    PATTERN.call_once(|| (0..16384u32).map(|i| b'a' + (i % 26) as u8).collect())
}

/// The kept connection to kvstore (`kv=`), one request at a time.
static KV: libos::sync::Mutex<Option<TcpStream>> = libos::sync::Mutex::new(None);

/// One line to kvstore and its one-line answer, over the kept connection (made again
/// once if it broke).
async fn kv_line(line: &str) -> Option<String> {
    let to = start_info::get()
        .cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kv="))?;
    let (ip, port) = to.split_once(':')?;
    let (ip, port) = (ip.parse().ok()?, port.parse().ok()?);
    let mut conn = KV.lock().await;
    for _ in 0..2 {
        if conn.is_none() {
            *conn = TcpStream::connect(ip, port).await.ok();
        }
        let s = conn.as_mut()?;
        if s.write_all(line.as_bytes()).await.is_ok() {
            let mut answer = alloc::vec::Vec::new();
            let mut b = [0u8; 512];
            loop {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        answer.extend_from_slice(&b[..n]);
                        if answer.ends_with(b"\n") {
                            return Some(String::from(String::from_utf8_lossy(&answer).trim_end()));
                        }
                    }
                }
            }
        }
        // Broken: once more on a new connection.
        *conn = None;
    }
    None
}

/// `/kv/KEY` as kvstore answers it.
async fn kv_request(method: &str, key: &str, body: &[u8]) -> (u16, String) {
    let one_word =
        |t: &str| !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || c.is_control());
    if !one_word(key) {
        return (400, String::from("a key is one word\n"));
    }
    let line = match method {
        "GET" | "HEAD" => format!("get {key}\n"),
        "DELETE" => format!("del {key}\n"),
        "PUT" => match core::str::from_utf8(body) {
            Ok(v) if !v.is_empty() && !v.contains(['\n', '\r']) => format!("put {key} {v}\n"),
            _ => return (400, String::from("a value is one line of text\n")),
        },
        _ => return (405, String::from("GET, PUT or DELETE\n")),
    };
    let Some(answer) = kv_line(&line).await else {
        return (502, String::from("kvstore does not answer\n"));
    };
    if let Some(v) = answer.strip_prefix(&format!("{key} = ")) {
        return (200, format!("{v}\n"));
    }
    if answer.ends_with(": no such key") {
        return (404, String::from("no such key\n"));
    }
    if answer.starts_with("ok ") {
        return (204, String::new());
    }
    (502, format!("{answer}\n"))
}

async fn send(
    s: &mut TcpStream,
    head: &str,
    body: &str,
    headers_only: bool,
) -> Result<(), net::Error> {
    // One write for both when they fit: one segment for a small page.
    let mut out = String::with_capacity(head.len() + body.len());
    out.push_str(head);
    if !headers_only {
        out.push_str(body);
    }
    BYTES_OUT.fetch_add(out.len() as u64, Ordering::Relaxed);
    s.write_all(out.as_bytes()).await
}

async fn connection(mut s: TcpStream) {
    CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    ACTIVE.fetch_add(1, Ordering::Relaxed);
    let mut buf = vec![0u8; HEAD_MAX];
    let mut have = 0;
    'conn: loop {
        // Every complete request in the buffer, in order.
        loop {
            match parse(&buf[..have]) {
                Ok(Some((req, n))) => {
                    let (keep, body_len) = (req.keep_alive, req.body_len);
                    let (method, path) = (String::from(req.method), String::from(req.path));
                    // The body: what is in the buffer, and the rest from the socket.
                    let mut body = alloc::vec::Vec::with_capacity(body_len);
                    let here = (have - n).min(body_len);
                    body.extend_from_slice(&buf[n..n + here]);
                    buf.copy_within(n + here..have, 0);
                    have -= n + here;
                    while body.len() < body_len {
                        let want = (body_len - body.len()).min(buf.len());
                        match s.read(&mut buf[..want]).await {
                            Ok(0) | Err(_) => break 'conn,
                            Ok(k) => body.extend_from_slice(&buf[..k]),
                        }
                    }
                    let req = Request {
                        method: &method,
                        path: &path,
                        keep_alive: keep,
                        body_len,
                    };
                    match answer(&mut s, &req, &body).await {
                        Ok(true) if keep => {}
                        _ => break 'conn,
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    ERRORS.fetch_add(1, Ordering::Relaxed);
                    let body = "bad request\n";
                    let _ = send(
                        &mut s,
                        &head(status, "text/plain", body.len(), false),
                        body,
                        false,
                    )
                    .await;
                    break 'conn;
                }
            }
        }
        if have == buf.len() {
            ERRORS.fetch_add(1, Ordering::Relaxed);
            let body = "header too large\n";
            let _ = send(
                &mut s,
                &head(431, "text/plain", body.len(), false),
                body,
                false,
            )
            .await;
            break;
        }
        match s.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
    }
    s.close(Duration::from_secs(2)).await;
    ACTIVE.fetch_sub(1, Ordering::Relaxed);
}

fn main() {
    let port = arg("port").unwrap_or(80) as u16;
    executor::block_on(async move {
        let (mac, addressing) = match net::up().await {
            Ok(x) => x,
            Err(e) => panic!("httpd: no network: {e:?}"),
        };
        let m = mac;
        println!(
            "httpd: vif up, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {}",
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            match addressing {
                Addressing::Static(_) => "static address",
                Addressing::Dhcp => "asking DHCP",
            }
        );
        let Some(addr) = net::wait_address(Duration::from_secs(30)).await else {
            panic!("httpd: no address after 30 s");
        };
        let mut listener =
            TcpListener::bind(port).unwrap_or_else(|e| panic!("httpd: bind {port}: {e:?}"));
        println!("httpd: serving http://{}:{port}/", addr.address());
        loop {
            let s = listener.accept().await;
            executor::spawn(connection(s));
        }
    });
}

libos::main!(main);
