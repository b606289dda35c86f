//! The reference of the HTTP rows of `cargo xtask bench io`: Debian's Linux on QEMU's
//! microvm with no hypervisor, serving the same files as examples/httpd's `/bytes/N`
//! with Debian's lighttpd through virtio-net and QEMU's user network, as the shim's
//! dom0 does. The kernel and its virtio modules are `linux.rs`'s, `/init` is
//! busybox-static's shell, lighttpd comes with the libraries it needs
//! ([`crate::initramfs`]); cached under `target/lighttpd-guest/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::initramfs::{self, Closure, Files};

/// Bumped when what goes into the initramfs changes (the cache's key).
const VERSION: u32 = 1;

/// The guest's address on QEMU's user network (the one slirp's DHCP would hand out).
pub const ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 15);

/// The line `/init` prints once lighttpd answers.
pub const READY: &str = "lighttpd-guest: serving";

/// The files under `/bytes/`: the sizes the bench asks examples/httpd for.
pub const SIZES: &[usize] = &[1024, 65536, 64 << 20];

/// The kernel (bzImage) and the initramfs, built if missing.
pub fn ensure(target_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let vmlinuz = initramfs::vmlinuz(target_dir)?;
    let dir = target_dir.join("lighttpd-guest");
    let cpio = dir.join(format!("initramfs-v{VERSION}.cpio"));
    if cpio.is_file() {
        return Ok((vmlinuz, cpio));
    }
    std::fs::create_dir_all(&dir)?;
    let mut files = Files::default();
    files.busybox(&dir.join("debs"))?;
    // The virtio modules and virtio_net's own dependencies, in load order.
    files.modules(
        target_dir,
        &[
            ("virtio", "kernel/drivers/virtio/virtio.ko"),
            ("virtio_ring", "kernel/drivers/virtio/virtio_ring.ko"),
            ("virtio_mmio", "kernel/drivers/virtio/virtio_mmio.ko"),
            ("failover", "kernel/net/core/failover.ko"),
            ("net_failover", "kernel/drivers/net/net_failover.ko"),
            ("virtio_net", "kernel/drivers/net/virtio_net.ko"),
        ],
    )?;
    let unpacked = initramfs::fetch_closure(
        &dir.join("debs"),
        "lighttpd",
        Closure::Direct,
        "lighttpd guest",
    )?;
    let libs = initramfs::library_index(&unpacked)?;
    let lighttpd = unpacked
        .iter()
        .map(|d| d.join("usr/sbin/lighttpd"))
        .find(|p| p.is_file())
        .context("lighttpd's package has no usr/sbin/lighttpd")?;
    files.program("usr/sbin/lighttpd", &lighttpd, &libs)?;
    files.file("etc/lighttpd.conf", CONFIG.as_bytes().to_vec(), 0o644);
    files.file("init", init_script().into_bytes(), 0o755);
    files.write(&cpio, "lighttpd guest")?;
    Ok((vmlinuz, cpio))
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

/// `/init`: mounts, loads the modules, configures eth0 as QEMU's user network expects,
/// writes the files, starts lighttpd and says so once it answers.
fn init_script() -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         b=/bin/busybox\n\
         $b mkdir -p /proc /sys /dev /tmp /run /var/tmp /srv/bytes\n\
         $b mount -t proc proc /proc\n\
         $b mount -t sysfs sys /sys\n\
         $b mount -t devtmpfs dev /dev\n\
         for m in virtio virtio_ring virtio_mmio failover net_failover virtio_net; do $b insmod /lib/modules/$m.ko; done\n\
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
