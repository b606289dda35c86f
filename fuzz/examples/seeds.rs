//! Writes the seed corpus, `fuzz/corpus/<target>/`: small, valid inputs of each parser
//! (made here, no third-party files), so that fuzzing starts past the first checks.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (rewrites the files).

use std::path::Path;

use hypervisor_shim::pv::build::bundle::{self as format, BundleDomain, Role};
use hypervisor_shim::pv::build::elf::testing::make_elf_at;
use pv_core::xs_wire::{self, MsgType};

const BASE: u64 = 0xffff_ffff_8000_0000;
/// The code right after the ELF and program headers: the smallest seed files.
const CODE_RIGHT_AFTER_HEADERS: u64 = 64 + 2 * 56;

fn pv_kernel() -> Vec<u8> {
    use xen_sys::*;
    make_elf_at(
        CODE_RIGHT_AFTER_HEADERS,
        BASE,
        &[0x90; 64],
        0x2000,
        &[
            (XEN_ELFNOTE_GUEST_OS, b"seed\0".to_vec()),
            (XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0".to_vec()),
            (XEN_ELFNOTE_LOADER, b"generic\0".to_vec()),
            (XEN_ELFNOTE_FEATURES, b"!writable_page_tables\0".to_vec()),
            (XEN_ELFNOTE_VIRT_BASE, BASE.to_le_bytes().to_vec()),
            (XEN_ELFNOTE_PADDR_OFFSET, BASE.to_le_bytes().to_vec()),
            (XEN_ELFNOTE_ENTRY, (BASE + 0x10).to_le_bytes().to_vec()),
            (
                XEN_ELFNOTE_HYPERCALL_PAGE,
                (BASE + 0x1000).to_le_bytes().to_vec(),
            ),
        ],
    )
}

/// A boot-protocol 2.15 header (one setup sector) followed by `payload`.
fn bzimage(payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 2 * 512];
    d[0x1f1] = 1;
    d[0x202..0x206].copy_from_slice(b"HdrS");
    d[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    d[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    d.extend_from_slice(payload);
    d
}

/// `\x7fELF and the rest of a kernel`, xz with the x86 BCJ filter and LZMA2, as Debian's
/// kernels are compressed (the same bytes as the bzimage crate's unit test).
const XZ_BCJ_ELF: &[u8] = &[
    0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x01, 0x69, 0x22, 0xde, 0x36, 0x02, 0x01, 0x04, 0x00,
    0x21, 0x01, 0x0c, 0x00, 0xd6, 0x7c, 0x18, 0xaf, 0x01, 0x00, 0x1c, 0x7f, 0x45, 0x4c, 0x46, 0x20,
    0x61, 0x6e, 0x64, 0x20, 0x74, 0x68, 0x65, 0x20, 0x72, 0x65, 0x73, 0x74, 0x20, 0x6f, 0x66, 0x20,
    0x61, 0x20, 0x6b, 0x65, 0x72, 0x6e, 0x65, 0x6c, 0x00, 0x00, 0x00, 0x00, 0xf5, 0xe4, 0xbe, 0xda,
    0x00, 0x01, 0x31, 0x1d, 0x40, 0xde, 0xdd, 0x85, 0x90, 0x42, 0x99, 0x0d, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x01, 0x59, 0x5a,
];

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn msg(ty: MsgType, req: u32, tx: u32, payload: &[u8]) -> Vec<u8> {
    xs_wire::encode(ty, req, tx, payload).unwrap()
}

/// A xenstored record of raw bytes from domU `dom` (1 ..= 3).
fn raw(dom: u8, bytes: &[u8]) -> Vec<u8> {
    let mut r = vec![(dom - 1) << 2];
    r.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    r.extend_from_slice(bytes);
    r
}

/// A xenstored record of a well-formed request.
fn request(dom: u8, ty: u8, tx: u8, path: u8, arg: u8, value: &[u8], split: u8) -> Vec<u8> {
    let mut r = vec![1 | (dom << 2), ty, tx, path, arg, value.len() as u8];
    r.extend_from_slice(value);
    r.push(split);
    r
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let kernel = pv_kernel();
    hypervisor_shim::pv::build::elf::XenImage::parse(&kernel).expect("the seed kernel parses");
    write(&out, "elf", "pv-kernel", &kernel);
    write(
        &out,
        "elf",
        "plain-elf",
        &make_elf_at(CODE_RIGHT_AFTER_HEADERS, 0x40_0000, &[0xc3], 1, &[]),
    );

    let dom = |name, role, cmdline, backends| BundleDomain {
        name,
        image: &kernel[..],
        memory_kib: 16 << 10,
        cmdline,
        role,
        backends,
    };
    let one = format::encode(&[dom("hello", Role::DomU, "", false)]).unwrap();
    write(&out, "bundle", "one-domu", &one);
    let three = format::encode(&[
        dom("dom0", Role::Dom0, "loglevel=3", true),
        dom("hello", Role::DomU, "x", false),
        dom("hello-1", Role::DomU, "", false),
    ])
    .unwrap();
    write(&out, "bundle", "dom0-and-two-domus", &three);
    write(&out, "bundle", "bare-elf", &kernel);

    for (name, seq) in hypervisor_shim::testing::sequence::seeds() {
        write(&out, "hypercalls", name, &seq);
    }

    write(&out, "bzimage", "gzip", &bzimage(&gzip(&kernel)));
    write(&out, "bzimage", "xz-bcj", &bzimage(XZ_BCJ_ELF));

    let mut stream = msg(MsgType::Read, 1, 0, b"device/vbd\0");
    stream.extend(msg(MsgType::Write, 2, 7, b"a/b\0value"));
    stream.extend(msg(MsgType::WatchEvent, 0, 0, b"/local/domain/1/a\0tok\0"));
    stream.extend(msg(MsgType::Error, 3, 0, b"ENOENT\0"));
    write(&out, "xs_wire", "four-messages", &stream);
    let mut broken = msg(MsgType::Directory, 4, 0, b"/\0");
    broken.extend(
        xs_wire::Header {
            ty: MsgType::Read,
            req_id: 5,
            tx_id: 0,
            len: 4097,
        }
        .to_bytes(),
    );
    write(&out, "xs_wire", "too-long", &broken);

    let mut session = raw(1, &msg(MsgType::Write, 1, 0, b"a\0hello"));
    session.extend(raw(1, &msg(MsgType::Watch, 2, 0, b"a\0t\0")));
    session.extend(raw(1, &msg(MsgType::TransactionStart, 3, 0, b"\0")));
    session.extend(raw(2, &msg(MsgType::Read, 4, 0, b"/local/domain/1/a\0")));
    write(&out, "xenstored", "raw-requests", &session);
    // Types by number: 12 Write, 4 Watch, 6 TransactionStart, 7 TransactionEnd, 2 Read.
    let mut tx = request(1, 6, 0, 0, 0, b"", 3);
    tx.extend(request(1, 12, 2, 1, 0, b"v", 20));
    tx.extend(request(2, 4, 0, 4, 0, b"", 0));
    tx.extend(request(1, 7, 2, 0, 0, b"", 255));
    tx.extend(request(0, 2, 0, 5, 0, b"", 9));
    tx.extend([3]); // domU 1 dies and comes back
    write(&out, "xenstored", "transaction", &tx);

    // Ring 2 (store requests): prod = 2000, read 100, peer writes, write 5000.
    let mut ring = vec![2u8, 1];
    ring.extend(2000u32.to_le_bytes());
    ring.extend([3, 100, 0, 2, 0, 0, 8]);
    ring.extend(b"12345678");
    ring.extend([4, 0x88, 0x13]);
    write(&out, "byte_ring", "store-req", &ring);
    // Ring 0 (console in): impossible indices, then a read and a write.
    let mut bad = vec![0u8, 1];
    bad.extend(5000u32.to_le_bytes());
    bad.extend([3, 16, 0, 4, 16, 0]);
    write(&out, "byte_ring", "corrupt", &bad);

    // blkif: a disk of 2048 sectors with every feature, an indirect page of good
    // segments, then a read of two segments in slot 0 and an indirect write of 64.
    let blk = |reqs: &[Vec<u8>]| {
        let mut b = 2048u16.to_le_bytes().to_vec();
        b.push(0x1e);
        for i in 0..32u32 {
            b.extend(i.to_le_bytes());
            b.extend([0, 7, 0, 0]);
        }
        for (slot, r) in reqs.iter().enumerate() {
            b.push(0);
            b.extend((64 + slot as u16 * 112).to_le_bytes());
            b.push(r.len() as u8);
            b.extend(r);
        }
        b.push(1);
        b.extend((reqs.len() as u32).to_le_bytes());
        b.push(2);
        b
    };
    let mut read = vec![0u8, 2, 0, 0, 0, 0, 0, 0];
    read.extend(7u64.to_le_bytes()); // id
    read.extend(16u64.to_le_bytes()); // sector
    read.extend([9, 0, 0, 0, 0, 7, 0, 0, 10, 0, 0, 0, 2, 3, 0, 0]);
    let mut indirect = vec![6u8, 1, 64, 0, 0, 0, 0, 0];
    indirect.extend(8u64.to_le_bytes()); // id
    indirect.extend(0u64.to_le_bytes()); // sector
    indirect.extend([0, 0, 0, 0]); // handle and padding
    indirect.extend(40u32.to_le_bytes()); // the indirect page
    write(
        &out,
        "blkif",
        "read-and-indirect-write",
        &blk(&[read, indirect]),
    );

    // blkfront: a read of 8 sectors at 8, answered in slot 0 with its id, then an
    // answer for no request.
    let mut front = vec![0u8, 0, 8, 0, 8];
    front.extend([1, 0, 0, 0, 0, 0, 2]);
    front.extend(1u32.to_le_bytes());
    front.push(3);
    front.extend([1, 1, 200, 99, 0, 0, 0, 0, 2]);
    front.extend(2u32.to_le_bytes());
    front.push(3);
    write(&out, "blkfront", "read-then-stray-answer", &front);

    // xs_client: two reads, the second answered, a watch event twice, a stray reply
    // split byte by byte, then the first read given up on.
    let mut xs = vec![0u8, 0];
    xs.extend([1, MsgType::Read.raw() as u8, 1, 2, b'o', b'k', 0]);
    xs.extend([1, MsgType::WatchEvent.raw() as u8, 200, 0, 0, 0, 0, 8]);
    xs.extend(b"/w/a\0xb-1\0".iter().take(8));
    xs.extend([1, MsgType::Read.raw() as u8, 200, 9, 9, 9, 9, 0, 0, 3]);
    write(&out, "xs_client", "reads-event-stray", &xs);

    // kvlog: a valid superblock (mode 0), three records (put, put, delete), then the
    // first sector of a fourth whose CRC does not match (a torn commit).
    let mut log = vec![0u8];
    for (seq, kind, key, value) in [
        (1, kvlog::Kind::Put, &b"alpha"[..], &b"one"[..]),
        (2, kvlog::Kind::Put, b"beta", b"two"),
        (3, kvlog::Kind::Del, b"alpha", b""),
    ] {
        kvlog::Record { seq, kind, key, value }.encode_into(&mut log);
    }
    let mut torn = Vec::new();
    kvlog::Record { seq: 4, kind: kvlog::Kind::Put, key: b"gamma", value: &[7; 600] }
        .encode_into(&mut torn);
    log.extend_from_slice(&torn[..512]);
    write(&out, "kvlog", "three-records-torn-fourth", &log);

    // offload: a CHECKSUM_PARTIAL TCP segment of 3000 bytes to cut at 1448 (TCPv4, the
    // IPv4 header checksum set right: mode 2), and the same over IPv6 (mode 3).
    for (name, v6) in [("tcpv4-gso", false), ("tcpv6-gso", true)] {
        let mut seed = vec![2 | u8::from(v6)];
        seed.extend_from_slice(&1448u16.to_le_bytes());
        seed.extend_from_slice(&tcp_frame(v6, &[0x5a; 3000]));
        write(&out, "offload", name, &seed);
    }
}

/// An Ethernet frame of a TCP segment (PSH|ACK) with a blank checksum, as Linux's
/// netfront sends one for TSO.
fn tcp_frame(v6: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    let tcp_len = 20 + payload.len();
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        for last in [1, 2] {
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
        }
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&(20 + tcp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    }
    f.extend_from_slice(&[
        0x0f, 0xa0, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 2, 0, 0, 0, 0, 0,
    ]);
    f.extend_from_slice(payload);
    if !v6 {
        smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[14..34]).fill_checksum();
    }
    pv_core::offload::pseudo_header_checksum(&mut f).expect("a TCP frame");
    f
}
