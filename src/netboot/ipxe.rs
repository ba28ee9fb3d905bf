//! `netboot --with-ipxe` (docs/STORE.md §9.1): iPXE's own boot files copied into DIR beside
//! the script, so plain PXE firmware can chain into iPXE from the same TFTP root. They come
//! from the host's Debian `ipxe` package; osimage builds no iPXE of its own.

use std::path::{Path, PathBuf};

use super::NetbootError;

/// Where Debian's `ipxe` package puts them (`dpkg -L ipxe`; `ipxe.efi` is a link to
/// `/boot/ipxe.efi`, followed when copied).
pub const DEBIAN_IPXE_DIR: &str = "/usr/lib/ipxe";

/// The files copied: BIOS PXE firmware chains `undionly.kpxe`, UEFI firmware `ipxe.efi`.
pub const IPXE_FILES: [&str; 2] = ["undionly.kpxe", "ipxe.efi"];

/// The iPXE files in `dir`, each checked to be there (a file, after links) before anything
/// is written: a missing one is named with the package that has it.
pub fn sources(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>, NetbootError> {
    IPXE_FILES
        .iter()
        .map(|name| {
            let path = dir.join(name);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Ok((*name, path)),
                _ => Err(NetbootError::NoIpxe(path)),
            }
        })
        .collect()
}

/// Copies `sources` into `out` (the temporary directory that becomes DIR), synced.
pub fn copy(sources: &[(&'static str, PathBuf)], out: &Path) -> Result<(), NetbootError> {
    for (name, from) in sources {
        let to = out.join(name);
        std::fs::copy(from, &to).map_err(NetbootError::io("copying", from))?;
        std::fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .map_err(NetbootError::io("syncing", &to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_with_the_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("undionly.kpxe"), b"pxe").unwrap();
        let e = sources(dir.path()).expect_err("ipxe.efi is missing");
        let text = e.to_string();
        assert!(
            text.contains(&dir.path().join("ipxe.efi").display().to_string())
                && text.contains("ipxe package"),
            "{text}"
        );
        std::fs::write(dir.path().join("ipxe.efi"), b"efi").unwrap();
        let found = sources(dir.path()).expect("both");
        let out = tempfile::tempdir().expect("tempdir");
        copy(&found, out.path()).expect("copy");
        assert_eq!(std::fs::read(out.path().join("ipxe.efi")).unwrap(), b"efi");
        assert_eq!(
            std::fs::read(out.path().join("undionly.kpxe")).unwrap(),
            b"pxe"
        );
    }
}
