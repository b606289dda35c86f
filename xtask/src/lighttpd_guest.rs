//! The reference of the HTTP rows of `cargo xtask bench io`: Debian's Linux on QEMU's
//! microvm with no hypervisor, serving the same files as examples/httpd's `/bytes/N`
//! with Debian's lighttpd through virtio-net and QEMU's user network, as the shim's
//! dom0 does. The kernel and its virtio modules are `linux.rs`'s, `/init` is
//! busybox-static's shell, lighttpd comes with the libraries it needs
//! ([`crate::initramfs`]); cached under `target/lighttpd-guest/`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::initramfs::{self, Closure, Guest};

/// Bumped when what goes into the initramfs changes (the cache's key).
const VERSION: u32 = 2;

/// The guest's address on QEMU's user network (the one slirp's DHCP would hand out).
pub const ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 15);

/// The line `/init` prints once lighttpd answers.
pub const READY: &str = "lighttpd-guest: serving";

/// The files under `/bytes/`: the sizes the bench asks examples/httpd for.
pub const SIZES: &[usize] = &[1024, 65536, 64 << 20];

/// The kernel (bzImage) and the initramfs, built if missing.
pub fn ensure(target_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    initramfs::ensure(
        target_dir,
        &Guest {
            name: "lighttpd-guest",
            version: VERSION,
            // virtio_net and its own dependencies, in load order.
            modules: &[
                ("failover", "kernel/net/core/failover.ko"),
                ("net_failover", "kernel/drivers/net/net_failover.ko"),
                ("virtio_net", "kernel/drivers/net/virtio_net.ko"),
            ],
            package: "lighttpd",
            closure: Closure::Direct,
            program: "usr/sbin/lighttpd",
            files: &[("etc/lighttpd.conf", CONFIG.as_bytes())],
            init: &init_script(),
        },
    )
}

/// lighttpd's configuration: static files from `/srv`, keep-alive as long as the
/// client wants (examples/httpd does not limit it either), epoll, sendfile.
const CONFIG: &str = r#"server.document-root = "/srv"
server.port = 80
server.event-handler = "linux-sysepoll"
server.network-backend = "sendfile"
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle = 60
server.max-connections = 1024
mimetype.assign = ( "" => "application/octet-stream" )
"#;

/// `/init` (after the common start): configures eth0 as QEMU's user network expects,
/// writes the files, starts lighttpd and says so once it answers.
fn init_script() -> String {
    let mut s = String::from(
        "$b mkdir -p /run /var/tmp /srv/bytes\n\
         i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do $b sleep 0.1; i=$((i+1)); done\n\
         $b ip link set lo up\n\
         $b ip link set eth0 up\n",
    );
    s.push_str(&format!(
        "$b ip addr add {ADDRESS}/24 dev eth0\n$b ip route add default via 10.0.2.2\n"
    ));
    for n in SIZES {
        s.push_str(&format!("$b head -c {n} /dev/zero > /srv/bytes/{n}\n"));
    }
    s.push_str(&format!(
        "/usr/sbin/lighttpd -f /etc/lighttpd.conf\n\
         i=0; until $b wget -q -O /dev/null http://127.0.0.1/bytes/1024 || [ $i -ge 100 ]; do $b sleep 0.1; i=$((i+1)); done\n\
         echo '{READY}'\n\
         while :; do $b sleep 3600; done\n"
    ));
    s
}
