//! Virtual block device names and numbers, as Xen's `docs/misc/vbd-interface.pandoc`
//! defines them: the name a configuration gives a disk (`xvda`, `xvdb1`, `sda`, `hda`,
//! `d0p1`, or the number itself) and the device number the toolstack writes in
//! xenstore (`device/vbd/<number>`, `backend/vbd/<domid>/<number>`, and the
//! `virtual-device` node), which is all the front end sees of the name.
//!
//! The encodings (disk and partition numbers count from 0; partition 0 is the whole
//! disk):
//!
//! | number                            | names                                  |
//! |-----------------------------------|----------------------------------------|
//! | `202 << 8 \| disk << 4 \| part`     | `xvd`, disks and partitions up to 15   |
//! | `1 << 28 \| disk << 8 \| part`      | `xvd`, disks or partitions 16 onwards  |
//! | `8 << 8 \| disk << 4 \| part`       | `sd`, disks and partitions up to 15    |
//! | `3 << 8 \| disk << 6 \| part`       | `hd`, disks 0..1, partitions 0..63     |
//! | `22 << 8 \| (disk - 2) << 6 \| part` | `hd`, disks 2..3, partitions 0..63     |
//!
//! Numbers from `2 << 28` are reserved, other numbers below `1 << 28` deprecated or
//! reserved: [`parse`] refuses them. Disk letters count as spreadsheet columns do
//! (`a`..`z` are 0..25, `aa` is 26, `zz` 701, `aaa` 702), so `xvdq` is disk 16 and
//! needs the extended encoding. This module is no_std: dom0 parses the names xtask
//! hands it, and xtask checks a manifest's names, with the same code.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Major number of the compact `xvd` encoding.
const XVD_MAJOR: u32 = 202;
/// Major number of the `sd` encoding.
const SD_MAJOR: u32 = 8;
/// Major number of `hda`, `hdb`.
const HD_MAJOR: u32 = 3;
/// Major number of `hdc`, `hdd`.
const HD_MAJOR_2: u32 = 22;
/// Marks the extended `xvd` encoding (bits 28 and up; `2 << 28` onwards is reserved).
const EXTENDED: u32 = 1 << 28;

/// Disks of the extended `xvd` encoding: 20 bits (disks 0 ..= 1048575, `xvda` to
/// `xvdbgqcv`).
pub const XVD_DISKS: u32 = 1 << 20;
/// Partitions of the extended `xvd` encoding: 8 bits.
pub const XVD_PARTITIONS: u32 = 1 << 8;

/// The three kinds of names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `xvd*` and `d<disk>p<part>`: Xen virtual disks.
    Xvd,
    /// `sd*`: SCSI disks.
    Sd,
    /// `hd*`: IDE disks.
    Hd,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Xvd => "xvd",
            Kind::Sd => "sd",
            Kind::Hd => "hd",
        }
    }

    /// The largest disk and partition numbers the kind's encodings hold.
    fn limits(self) -> (u32, u32) {
        match self {
            Kind::Xvd => (XVD_DISKS - 1, XVD_PARTITIONS - 1),
            Kind::Sd => (15, 15),
            Kind::Hd => (3, 63),
        }
    }
}

/// Why a name is not a virtual block device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VdevError {
    /// None of the forms (`xvd<letters>[<partition>]`, `sd...`, `hd...`,
    /// `d<disk>[p<partition>]`, a device number); `why` says what is wrong.
    Syntax { name: String, why: &'static str },
    /// A disk number beyond what its kind's encodings hold.
    Disk { name: String, disk: u64, max: u32 },
    /// A partition number beyond what its kind's encodings hold.
    Partition {
        name: String,
        partition: u64,
        max: u32,
    },
    /// A number that is in none of the encodings (reserved or deprecated).
    Reserved { name: String },
}

impl fmt::Display for VdevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VdevError::Syntax { name, why } => write!(
                f,
                "vdev {name:?}: {why} (expected a name like xvda, xvdb1, xvdaa, sda, hda, \
                 d0p1, or a device number)"
            ),
            VdevError::Disk { name, disk, max } => {
                write!(f, "vdev {name:?}: disk {disk} is out of range (0..={max})")
            }
            VdevError::Partition {
                name,
                partition,
                max,
            } => write!(
                f,
                "vdev {name:?}: partition {partition} is out of range (0..={max})"
            ),
            VdevError::Reserved { name } => write!(
                f,
                "vdev {name:?}: not a device number of any vbd-interface encoding \
                 (reserved or deprecated)"
            ),
        }
    }
}

/// The xenstore device number of the virtual block device `name`: `xvda` is 51712,
/// `xvda1` 51713, `xvdb` 51728, `xvdq` `1 << 28 | 16 << 8`, `sda` 2048, `hda` 768,
/// `d1p2` is `xvdb2`; a plain decimal number is the device number itself, accepted if
/// it is in one of the encodings.
pub fn parse(name: &str) -> Result<u32, VdevError> {
    let syntax = |why| VdevError::Syntax {
        name: name.into(),
        why,
    };
    if name.is_empty() {
        return Err(syntax("empty"));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        // The number as the toolstack writes it: only defined encodings.
        return match name.parse::<u32>() {
            Ok(id) if decode(id).is_some() => Ok(id),
            _ => Err(VdevError::Reserved { name: name.into() }),
        };
    }
    let (kind, disk, partition) = if let Some(rest) = name.strip_prefix("xvd") {
        named(Kind::Xvd, rest).map_err(syntax)?
    } else if let Some(rest) = name.strip_prefix("sd") {
        named(Kind::Sd, rest).map_err(syntax)?
    } else if let Some(rest) = name.strip_prefix("hd") {
        named(Kind::Hd, rest).map_err(syntax)?
    } else if let Some(rest) = name.strip_prefix('d') {
        numbered(rest).map_err(syntax)?
    } else {
        return Err(syntax("unknown prefix"));
    };
    encode(kind, disk, partition).map_err(|e| match e {
        Range::Disk(max) => VdevError::Disk {
            name: name.into(),
            disk,
            max,
        },
        Range::Partition(max) => VdevError::Partition {
            name: name.into(),
            partition,
            max,
        },
    })
}

/// The `xvd` name of device number `id` (`51712` is `xvda`, `51713` `xvda1`); `None`
/// for the `sd`/`hd` encodings and numbers in no encoding. The inverse of [`parse`]
/// on `xvd` names.
pub fn name(id: u32) -> Option<String> {
    let (kind, disk, partition) = decode(id)?;
    if kind != Kind::Xvd {
        return None;
    }
    let mut s = String::from(kind.prefix());
    s.push_str(&letters(disk));
    if partition != 0 {
        use core::fmt::Write as _;
        let _ = write!(s, "{partition}");
    }
    Some(s)
}

/// `<letters>[<partition>]` after the prefix.
fn named(kind: Kind, rest: &str) -> Result<(Kind, u64, u64), &'static str> {
    let split = rest
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(rest.len());
    let (letters, digits) = rest.split_at(split);
    if letters.is_empty() {
        return Err("no disk letters after the prefix");
    }
    // Bijective base 26, saturating: a long run of letters is simply out of range.
    // `a`..`z` are the digits 1..26, and the disk is the number less one.
    let disk = letters.bytes().fold(0u64, |n, b| {
        n.saturating_mul(26).saturating_add(u64::from(b - b'a' + 1))
    }) - 1;
    let partition = match digits {
        "" => 0,
        _ => {
            if digits.starts_with('0') {
                return Err("a partition number starts at 1, without leading zeros (the whole disk has none)");
            }
            number(digits)?
        }
    };
    Ok((kind, disk, partition))
}

/// `<disk>[p<partition>]` after the `d`: Xen virtual disks by number.
fn numbered(rest: &str) -> Result<(Kind, u64, u64), &'static str> {
    let (disk, partition) = match rest.split_once('p') {
        Some((disk, partition)) => (disk, Some(partition)),
        None => (rest, None),
    };
    let disk = decimal(disk)?;
    let partition = match partition {
        Some(p) => decimal(p)?,
        None => 0,
    };
    Ok((Kind::Xvd, disk, partition))
}

/// A decimal number without leading zeros (`0` itself is fine).
fn decimal(digits: &str) -> Result<u64, &'static str> {
    if digits.len() > 1 && digits.starts_with('0') {
        return Err("a number with a leading zero");
    }
    number(digits)
}

/// Decimal digits, saturating (a huge number is out of range, not malformed).
fn number(digits: &str) -> Result<u64, &'static str> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected decimal digits");
    }
    Ok(digits.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

enum Range {
    Disk(u32),
    Partition(u32),
}

/// The device number of a disk and partition of `kind`: the compact encoding when it
/// holds them, as the table in the module documentation says.
fn encode(kind: Kind, disk: u64, partition: u64) -> Result<u32, Range> {
    let (max_disk, max_partition) = kind.limits();
    if disk > u64::from(max_disk) {
        return Err(Range::Disk(max_disk));
    }
    if partition > u64::from(max_partition) {
        return Err(Range::Partition(max_partition));
    }
    // Both fit in u32 now.
    let (d, p) = (disk as u32, partition as u32);
    Ok(match kind {
        Kind::Xvd if d < 16 && p < 16 => XVD_MAJOR << 8 | d << 4 | p,
        Kind::Xvd => EXTENDED | d << 8 | p,
        Kind::Sd => SD_MAJOR << 8 | d << 4 | p,
        Kind::Hd if d < 2 => HD_MAJOR << 8 | d << 6 | p,
        Kind::Hd => HD_MAJOR_2 << 8 | (d - 2) << 6 | p,
    })
}

/// The kind, disk and partition of device number `id`, if it is in an encoding.
fn decode(id: u32) -> Option<(Kind, u32, u32)> {
    let (major, low) = (id >> 8, id & 0xff);
    Some(match major {
        _ if id >> 28 == 1 => (Kind::Xvd, (id >> 8) & (XVD_DISKS - 1), low),
        XVD_MAJOR => (Kind::Xvd, low >> 4, low & 15),
        SD_MAJOR => (Kind::Sd, low >> 4, low & 15),
        // Disks 0..1 (resp. 2..3) use the low two bits of the disk field only.
        HD_MAJOR if low < 128 => (Kind::Hd, low >> 6, low & 63),
        HD_MAJOR_2 if low < 128 => (Kind::Hd, 2 + (low >> 6), low & 63),
        _ => return None,
    })
}

/// Disk number `n` in letters: `a` for 0, `z` 25, `aa` 26.
fn letters(mut n: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    out.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[test]
    fn the_documented_numbers() {
        let cases = [
            ("xvda", 51712),
            ("xvdb", 51728),
            ("xvda1", 51713),
            ("xvdp15", 202 << 8 | 15 << 4 | 15),
            ("xvdq", 1 << 28 | 16 << 8),
            ("xvda16", 1 << 28 | 16),
            ("xvdz", 1 << 28 | 25 << 8),
            ("xvdaa", 1 << 28 | 26 << 8),
            ("xvdzz", 1 << 28 | 701 << 8),
            ("xvdaaa", 1 << 28 | 702 << 8),
            ("xvda255", 1 << 28 | 255),
            ("hda", 768),
            ("hdb", 3 << 8 | 1 << 6),
            ("hdc", 22 << 8),
            ("hdd63", 22 << 8 | 1 << 6 | 63),
            ("sda", 2048),
            ("sdb3", 8 << 8 | 1 << 4 | 3),
            ("sdp15", 8 << 8 | 15 << 4 | 15),
            ("d0", 51712),
            ("d0p0", 51712),
            ("d1p2", 202 << 8 | 1 << 4 | 2),
            ("d16p0", 1 << 28 | 16 << 8),
            ("d1048575p255", 1 << 28 | 0xfffff << 8 | 255),
            ("51712", 51712),
            ("768", 768),
            ("268439552", 1 << 28 | 16 << 8),
        ];
        for (name, id) in cases {
            assert_eq!(parse(name), Ok(id), "{name}");
        }
    }

    #[test]
    fn xvd_names_round_trip() {
        for id in [
            51712,
            51713,
            51728,
            51967,
            1 << 28 | 16 << 8,
            1 << 28 | 0xfffff << 8 | 255,
        ] {
            let n = name(id).unwrap();
            assert_eq!(parse(&n), Ok(id), "{n}");
        }
        for disk in (0..2000).chain([XVD_DISKS - 1]) {
            for partition in [0, 1, 15, 16, 255] {
                let n = format!(
                    "xvd{}{}",
                    letters(disk),
                    match partition {
                        0 => "".to_string(),
                        p => p.to_string(),
                    }
                );
                let id = parse(&n).unwrap();
                assert_eq!(name(id).as_deref(), Some(n.as_str()));
                assert_eq!(decode(id), Some((Kind::Xvd, disk, partition)));
            }
        }
        assert_eq!(letters(XVD_DISKS - 1), "bgqcv");
        // The extended form of a small disk names the same disk.
        assert_eq!(name(1 << 28 | 1 << 8 | 2).as_deref(), Some("xvdb2"));
    }

    #[test]
    fn only_xvd_numbers_have_names() {
        assert_eq!(name(768), None);
        assert_eq!(name(2048), None);
        assert_eq!(name(0), None);
        assert_eq!(name(2 << 28), None);
        assert_eq!(name(u32::MAX), None);
        // Every sd and hd name parses back to its kind, disk and partition.
        for (kind, disks, partitions) in [(Kind::Sd, 16, 16), (Kind::Hd, 4, 64)] {
            for d in 0..disks {
                for p in 0..partitions {
                    let mut n = format!("{}{}", kind.prefix(), letters(d));
                    if p != 0 {
                        n.push_str(&p.to_string());
                    }
                    assert_eq!(decode(parse(&n).unwrap()), Some((kind, d, p)), "{n}");
                }
            }
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("vda", "unknown prefix"),
            ("xvd", "no disk letters"),
            ("xvdA", "no disk letters"),
            ("xvda0", "starts at 1"),
            ("xvda01", "starts at 1"),
            ("xvda1b", "expected decimal digits"),
            ("xvda-1", "expected decimal digits"),
            (" xvda", "unknown prefix"),
            ("d", "expected decimal digits"),
            ("dp1", "expected decimal digits"),
            ("d01", "leading zero"),
            ("d1p", "expected decimal digits"),
            ("d1p2p3", "expected decimal digits"),
            ("xvdbgqcw", "disk 1048576 is out of range (0..=1048575)"),
            ("xvdzzzzzzzzzzzzzzzzzz", "is out of range (0..=1048575)"),
            ("xvda256", "partition 256 is out of range (0..=255)"),
            ("d1048576", "disk 1048576 is out of range"),
            ("sdq", "disk 16 is out of range (0..=15)"),
            ("sda16", "partition 16 is out of range (0..=15)"),
            ("hde", "disk 4 is out of range (0..=3)"),
            ("hda64", "partition 64 is out of range (0..=63)"),
            ("0", "reserved or deprecated"),
            ("12345", "reserved or deprecated"),
            ("536870912", "reserved or deprecated"),
            ("99999999999", "reserved or deprecated"),
            ("896", "reserved or deprecated"),
        ];
        for (name, want) in cases {
            let e = parse(name).unwrap_err().to_string();
            assert!(e.contains(want), "{name:?}: want {want:?} in: {e}");
            assert!(e.starts_with(&format!("vdev {name:?}: ")), "{e}");
        }
    }
}
