//! Issue #8's negative proof: a copy of the captured ISO whose EFI boot image holds an
//! unsigned shim (the same binary with its Authenticode signature cut off), which firmware
//! with Secure Boot on must refuse to start.

use std::path::Path;
use std::process::Command;

use osimage::iso::{EFI_IMAGE, IsoReader, pe_signature_len};

/// What Secure Boot firmware or shim prints when it refuses an image: OVMF's boot manager
/// ("Access Denied" from LoadImage) or shim ("Security Violation").
pub const REFUSED: &[&str] = &["Access Denied", "Security Violation"];

/// The file offset and length of the security data directory entry of a PE/COFF image.
fn security_entry(pe: &[u8]) -> (usize, u32, u32) {
    let le32 = |at: usize| u32::from_le_bytes(pe[at..at + 4].try_into().expect("4 bytes"));
    let nt = le32(0x3c) as usize;
    assert_eq!(&pe[nt..nt + 4], b"PE\0\0", "not a PE image");
    let opt = nt + 24;
    let magic = u16::from_le_bytes([pe[opt], pe[opt + 1]]);
    let dirs = opt + if magic == 0x20b { 112 } else { 96 };
    let entry = dirs + 4 * 8; // IMAGE_DIRECTORY_ENTRY_SECURITY
    (entry, le32(entry), le32(entry + 4))
}

/// `pe` with its certificate table removed and the directory entry zeroed: byte for byte the
/// same program, no longer signed.
pub fn strip_signature(pe: &[u8]) -> Vec<u8> {
    let (entry, offset, size) = security_entry(pe);
    assert!(size > 0, "the image is not signed to begin with");
    assert_eq!(
        (offset + size) as usize,
        pe.len(),
        "the certificate table is not at the end of the file"
    );
    let mut out = pe[..offset as usize].to_vec();
    out[entry..entry + 8].fill(0);
    out
}

/// Copies `iso` to `out` and replaces `EFI/BOOT/BOOTX64.EFI` inside its EFI boot image (in
/// place, with mtools at the image's offset) by an unsigned copy of itself.
pub fn iso_with_unsigned_shim(iso: &Path, out: &Path, work: &Path) {
    std::fs::copy(iso, out).expect("copying the ISO");
    let reader = IsoReader::open(out).expect("reading the ISO copy");
    let efi = reader
        .lookup(EFI_IMAGE)
        .expect("ISO directory")
        .unwrap_or_else(|| panic!("no {EFI_IMAGE} in the ISO"));
    let fat = format!("{}@@{}", out.display(), efi.offset);
    let signed = work.join("BOOTX64.EFI.signed");
    let unsigned = work.join("BOOTX64.EFI");
    mtools(
        &["mcopy", "-n", "-i", &fat, "::/EFI/BOOT/BOOTX64.EFI"],
        &signed,
    );
    let bytes = std::fs::read(&signed).expect("the ISO's shim");
    assert!(
        pe_signature_len(&signed).expect("PE") > 0,
        "the ISO's BOOTX64.EFI is not signed: the capture did not use the signed chain"
    );
    std::fs::write(&unsigned, strip_signature(&bytes)).expect("writing the unsigned shim");
    assert_eq!(pe_signature_len(&unsigned), Ok(0));
    let status = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i", &fat])
        .arg(&unsigned)
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .status()
        .expect("running mcopy");
    assert!(
        status.success(),
        "mcopy into the ISO copy's EFI image failed"
    );
}

/// Runs an mtools copy out of an image into `to`.
fn mtools(args: &[&str], to: &Path) {
    let status = Command::new(args[0])
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(&args[1..])
        .arg(to)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", args[0]));
    assert!(status.success(), "{} failed", args.join(" "));
}
