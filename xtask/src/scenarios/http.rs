//! A small HTTP/1.1 client for the network scenarios: requests on one keep-alive
//! connection, responses read by their `Content-Length` (what httpd sends), every
//! socket with a timeout so a stuck guest fails the scenario instead of hanging it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr, timeout: Duration) -> Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(Conn { s, buf: Vec::new() })
    }

    /// `METHOD path` with `body`, and its response.
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Response> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: appliance\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.s.write_all(head.as_bytes())?;
        self.s.write_all(body)?;
        self.response()
    }

    pub fn get(&mut self, path: &str) -> Result<Response> {
        self.request("GET", path, &[])
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 65536];
        let n = self.s.read(&mut chunk).context("reading the response")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn response(&mut self) -> Result<Response> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 16384 {
                bail!("no end of the response head in 16 KiB");
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("status line {status_line:?}"))?;
        let len: usize = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .context("no Content-Length")?;
        while self.buf.len() < end + len {
            self.fill()?;
        }
        let body = self.buf[end..end + len].to_vec();
        self.buf.drain(..end + len);
        Ok(Response { status, body })
    }
}

/// A free TCP port of the host's loopback (for QEMU to forward).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
