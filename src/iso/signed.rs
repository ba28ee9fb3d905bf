//! The Secure Boot chain of a captured system (docs/SECUREBOOT.md): the distribution's
//! Microsoft-signed shim, the GRUB its vendor signed for CD boot, and a signed kernel. When all
//! three are there, the ISO's EFI image boots through them, so firmware with Secure Boot on
//! runs nothing unsigned before the kernel; when one is missing, the caller says which.

use std::path::{Path, PathBuf};

use object::pe::IMAGE_DIRECTORY_ENTRY_SECURITY;
use object::read::pe::{PeFile32, PeFile64};

/// The signed boot files found in a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedChain {
    /// Microsoft-signed shim: becomes `EFI/BOOT/BOOTX64.EFI`.
    pub shim: PathBuf,
    /// The vendor-signed GRUB for CD/USB boot, with its built-in config that finds the medium
    /// by `/.disk/info`: becomes `EFI/BOOT/grubx64.efi`, the file shim loads next.
    pub grub: PathBuf,
    /// MokManager, which shim starts when a key is to be enrolled (optional).
    pub mok_manager: Option<PathBuf>,
}

/// Where Debian and Ubuntu install the signed binaries (`shim-signed`,
/// `grub-efi-amd64-signed`, `shim-helpers-amd64-signed`); the first that exists wins.
const SHIM: &[&str] = &[
    "usr/lib/shim/shimx64.efi.signed.latest",
    "usr/lib/shim/shimx64.efi.signed",
];
const GRUB_CD: &[&str] = &["usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed"];
const MOK_MANAGER: &[&str] = &["usr/lib/shim/mmx64.efi.signed"];

/// Finds the signed shim and GRUB under `root` and checks that each, and `kernel`, carries an
/// Authenticode signature. `Err` says, for the capture report, why the ISO cannot boot with
/// Secure Boot on.
pub fn find_signed_chain(root: &Path, kernel: &Path) -> Result<SignedChain, String> {
    let pick = |candidates: &[&str]| {
        candidates
            .iter()
            .map(|c| root.join(c))
            .find(|p| p.is_file())
    };
    let shim = pick(SHIM).ok_or_else(|| {
        format!(
            "no signed shim in {} (package shim-signed)",
            root.join("usr/lib/shim").display()
        )
    })?;
    let grub = pick(GRUB_CD).ok_or_else(|| {
        format!(
            "no signed GRUB in {} (package grub-efi-amd64-signed)",
            root.join("usr/lib/grub/x86_64-efi-signed").display()
        )
    })?;
    for (what, path) in [
        ("shim", &shim),
        ("GRUB", &grub),
        ("kernel", &kernel.to_path_buf()),
    ] {
        match pe_signature_len(path) {
            Ok(0) => return Err(format!("the {what} {} is not signed", path.display())),
            Ok(_) => {}
            Err(e) => return Err(format!("the {what} {}: {e}", path.display())),
        }
    }
    Ok(SignedChain {
        shim,
        grub,
        mok_manager: pick(MOK_MANAGER),
    })
}

/// Length of the Authenticode signature table of the PE/COFF file at `path` (0: unsigned).
pub fn pe_signature_len(path: &Path) -> Result<u32, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    signature_len(&data)
}

/// The certificate table's size, from the optional header's security data directory; its
/// range must lie inside the file (a truncated signed binary is not signed).
fn signature_len(data: &[u8]) -> Result<u32, String> {
    let dir = match PeFile64::parse(data) {
        Ok(pe) => pe.data_directory(IMAGE_DIRECTORY_ENTRY_SECURITY).copied(),
        Err(_) => PeFile32::parse(data)
            .map_err(|e| format!("not a PE/COFF (EFI) executable: {e}"))?
            .data_directory(IMAGE_DIRECTORY_ENTRY_SECURITY)
            .copied(),
    };
    let Some(dir) = dir else { return Ok(0) };
    let le = object::LittleEndian;
    // The security directory's "address" is a file offset, not an RVA (PE/COFF 4.7).
    let (offset, size) = (dir.virtual_address.get(le) as u64, dir.size.get(le) as u64);
    if size == 0 {
        return Ok(0);
    }
    if offset + size > data.len() as u64 {
        return Err(format!(
            "its signature table ({size} bytes at {offset}) runs past the end of the file ({} bytes)",
            data.len()
        ));
    }
    Ok(size as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: DOS stub pointing at the PE header, a COFF header, an optional
    /// header with 16 data directories, and `cert` as the certificate table at the end.
    fn pe(cert: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 0x80];
        d[0..2].copy_from_slice(b"MZ");
        d[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        d.extend_from_slice(b"PE\0\0");
        let opt_len: u16 = 112 + 16 * 8;
        let mut coff = [0u8; 20];
        coff[0..2].copy_from_slice(&0x8664u16.to_le_bytes()); // x86-64
        coff[16..18].copy_from_slice(&opt_len.to_le_bytes());
        coff[18..20].copy_from_slice(&0x0022u16.to_le_bytes()); // executable, large address
        d.extend_from_slice(&coff);
        let mut opt = vec![0u8; opt_len as usize];
        opt[0..2].copy_from_slice(&0x20bu16.to_le_bytes()); // PE32+
        opt[32..36].copy_from_slice(&0x1000u32.to_le_bytes()); // section alignment
        opt[36..40].copy_from_slice(&0x200u32.to_le_bytes()); // file alignment
        opt[56..60].copy_from_slice(&0x1000u32.to_le_bytes()); // size of image
        opt[60..64].copy_from_slice(&0x200u32.to_le_bytes()); // size of headers
        opt[108..112].copy_from_slice(&16u32.to_le_bytes()); // number of data directories
        let start = d.len() + opt.len();
        let body = start.next_multiple_of(8);
        if !cert.is_empty() {
            let sec = 112 + IMAGE_DIRECTORY_ENTRY_SECURITY * 8;
            opt[sec..sec + 4].copy_from_slice(&(body as u32).to_le_bytes());
            opt[sec + 4..sec + 8].copy_from_slice(&(cert.len() as u32).to_le_bytes());
        }
        d.extend_from_slice(&opt);
        d.resize(body, 0);
        d.extend_from_slice(cert);
        d
    }

    #[test]
    fn a_certificate_table_means_signed() {
        assert_eq!(signature_len(&pe(&[7u8; 40])), Ok(40));
        assert_eq!(signature_len(&pe(&[])), Ok(0));
    }

    #[test]
    fn a_truncated_signature_or_a_non_pe_is_an_error() {
        let mut d = pe(&[7u8; 40]);
        d.truncate(d.len() - 1);
        assert!(signature_len(&d).unwrap_err().contains("past the end"));
        assert!(signature_len(b"\x7fELF not a PE").is_err());
    }

    #[test]
    fn the_chain_needs_shim_grub_and_a_signed_kernel() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let kernel = r.join("vmlinuz");
        std::fs::write(&kernel, pe(&[1u8; 16])).expect("kernel");
        let err = find_signed_chain(r, &kernel).unwrap_err();
        assert!(err.contains("shim-signed"), "{err}");

        for p in [SHIM[1], GRUB_CD[0]] {
            std::fs::create_dir_all(r.join(p).parent().expect("parent")).expect("mkdir");
            std::fs::write(r.join(p), pe(&[2u8; 16])).expect("write");
        }
        let chain = find_signed_chain(r, &kernel).expect("chain");
        assert_eq!(chain.shim, r.join(SHIM[1]));
        assert_eq!(chain.grub, r.join(GRUB_CD[0]));
        assert_eq!(chain.mok_manager, None);

        std::fs::write(&kernel, pe(&[])).expect("unsigned kernel");
        let err = find_signed_chain(r, &kernel).unwrap_err();
        assert!(
            err.contains("kernel") && err.contains("not signed"),
            "{err}"
        );
    }
}
