//! Linux bzImage kernels for `cargo xtask run --kernel`: Xen's dom0 loader accepts a
//! bzImage and boots the ELF inside it (`xen/common/libelf`, `bzimage.c`); our shim reads
//! only ELF, so xtask does that unwrapping on the host, as Xen's loader would: the
//! payload named by the boot protocol header (`Documentation/x86/boot.rst`,
//! `payload_offset`/`payload_length`, protocol 2.08+) is decompressed to a plain ELF.

#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};

/// Offsets in the real-mode header (`struct setup_header` at 0x1f1).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;

const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// Whether `data` starts like an x86 Linux boot image ("HdrS" header).
pub fn is_bzimage(data: &[u8]) -> bool {
    data.get(HEADER_MAGIC..HEADER_MAGIC + 4) == Some(b"HdrS")
}

/// The `N` header bytes at `at`, or an error if the file ends before them.
fn bytes_at<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N]> {
    let b = data
        .get(at..at + N)
        .context("bzImage header is truncated")?;
    Ok(b.try_into().expect("a slice of N bytes"))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32> {
    bytes_at(data, at).map(u32::from_le_bytes)
}

/// The compressed payload of a bzImage.
pub fn payload(data: &[u8]) -> Result<&[u8]> {
    if !is_bzimage(data) {
        bail!("not a Linux boot image (no HdrS header)");
    }
    // "HdrS" ends at 0x206: the version after it may be cut off too.
    let version = u16::from_le_bytes(bytes_at(data, VERSION)?);
    if version < 0x208 {
        bail!("boot protocol {version:#x} has no payload fields (2.08 or later needed)");
    }
    let setup = match data[SETUP_SECTS] {
        0 => 4,
        n => n as usize,
    };
    let start = (setup + 1) * 512 + u32_at(data, PAYLOAD_OFFSET)? as usize;
    let len = u32_at(data, PAYLOAD_LENGTH)? as usize;
    data.get(start..start + len)
        .context("bzImage payload lies outside the file")
}

/// Decompresses a bzImage's payload to the ELF kernel inside.
pub fn unwrap(data: &[u8]) -> Result<Vec<u8>> {
    let payload = payload(data)?;
    let mut out = Vec::new();
    if payload.starts_with(XZ_MAGIC) {
        // Kernels use the x86 BCJ filter before LZMA2, which xz4rust decodes.
        std::io::Read::read_to_end(
            &mut xz4rust::XzReader::new(std::io::Cursor::new(payload.to_vec())),
            &mut out,
        )
        .context("xz payload")?;
    } else if payload.starts_with(GZIP_MAGIC) {
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(payload), &mut out)
            .context("gzip payload")?;
    } else {
        bail!(
            "bzImage payload compression not supported (magic {:02x?}; xz and gzip are)",
            &payload[..payload.len().min(6)]
        );
    }
    if !out.starts_with(b"\x7fELF") {
        bail!("bzImage payload is not an ELF kernel");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal boot header with `payload` at offset 0 after one setup sector.
    fn image(payload: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 2 * 512];
        d[SETUP_SECTS] = 1;
        d[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        d[VERSION..VERSION + 2].copy_from_slice(&0x20fu16.to_le_bytes());
        d[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        d.extend_from_slice(payload);
        d
    }

    /// `b"\x7fELF and the rest of a kernel"` compressed as kernels are: xz, x86 BCJ filter,
    /// then LZMA2 (Python: `lzma.compress(.., filters=[FILTER_X86, FILTER_LZMA2])`).
    const XZ_BCJ_ELF: &[u8] = &[
        0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x01, 0x69, 0x22, 0xde, 0x36, 0x02, 0x01, 0x04,
        0x00, 0x21, 0x01, 0x0c, 0x00, 0xd6, 0x7c, 0x18, 0xaf, 0x01, 0x00, 0x1c, 0x7f, 0x45, 0x4c,
        0x46, 0x20, 0x61, 0x6e, 0x64, 0x20, 0x74, 0x68, 0x65, 0x20, 0x72, 0x65, 0x73, 0x74, 0x20,
        0x6f, 0x66, 0x20, 0x61, 0x20, 0x6b, 0x65, 0x72, 0x6e, 0x65, 0x6c, 0x00, 0x00, 0x00, 0x00,
        0xf5, 0xe4, 0xbe, 0xda, 0x00, 0x01, 0x31, 0x1d, 0x40, 0xde, 0xdd, 0x85, 0x90, 0x42, 0x99,
        0x0d, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x59, 0x5a,
    ];

    #[test]
    fn gzip_and_xz_payloads_unwrap_to_the_elf() {
        let elf = b"\x7fELF and the rest of a kernel".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&elf).unwrap();
        assert_eq!(unwrap(&image(&gz.finish().unwrap())).unwrap(), elf);
        assert_eq!(unwrap(&image(XZ_BCJ_ELF)).unwrap(), elf);
    }

    #[test]
    fn bad_images_are_refused_with_a_reason() {
        assert!(unwrap(b"not a kernel").is_err());
        let e = unwrap(&image(b"BZh91AY")).unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
        let mut truncated = image(b"");
        truncated[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(unwrap(&truncated).is_err());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"plain text").unwrap();
        let e = unwrap(&image(&gz.finish().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an ELF"), "{e}");
    }

    /// Seen while writing the bzimage fuzz target (its input is under
    /// fuzz/regressions/bzimage/): a file that ends right after "HdrS" made the version
    /// read index past the end.
    #[test]
    fn a_header_cut_before_the_version_is_refused() {
        for len in [HEADER_MAGIC + 4, VERSION + 1] {
            let mut d = vec![0u8; len];
            d[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
            let e = payload(&d).unwrap_err().to_string();
            assert!(e.contains("truncated"), "{e}");
        }
    }
}
