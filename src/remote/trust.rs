//! Which HTTPS servers are believed (docs/STORE.md §7.3): the Mozilla roots bundled in the
//! binary (a rescue environment has no CA store), and, with `--ca FILE`, the CA certificates
//! of a PEM file besides them, for a fleet's internal server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// The roots HTTPS trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Extra CA certificates and the file they came from; none: the bundled roots alone.
    extra: Option<(PathBuf, Arc<Vec<Certificate<'static>>>)>,
}

/// A `--ca FILE` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the CA certificates {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Bad { path: PathBuf, msg: String },
}

impl Trust {
    /// The bundled roots and the PEM certificates of `path` (one CA or a bundle; other PEM
    /// sections, such as a key, are ignored). A file with no certificate, or one that is not
    /// X.509, is refused.
    pub fn with_ca_file(path: &Path) -> Result<Trust, TrustError> {
        let pem = std::fs::read(path).map_err(|source| TrustError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::with_ca_pem(path, &pem)
    }

    /// As `with_ca_file`, for the file's bytes `pem`; `path` names it in errors.
    pub fn with_ca_pem(path: &Path, pem: &[u8]) -> Result<Trust, TrustError> {
        let bad = |msg: String| TrustError::Bad {
            path: path.to_path_buf(),
            msg,
        };
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item.map_err(|e| bad(format!("not a PEM file ({e})")))? {
                PemItem::Certificate(c) => certs.push(c),
                _ => continue,
            }
        }
        if certs.is_empty() {
            return Err(bad(
                "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into(),
            ));
        }
        // ureq skips certificates it cannot parse; a CA that silently does not count would
        // leave the user puzzling over "not trusted".
        for (i, c) in certs.iter().enumerate() {
            let der = rustls::pki_types::CertificateDer::from(c.der());
            rustls::RootCertStore::empty()
                .add(der)
                .map_err(|e| bad(format!("certificate {} is not usable: {e}", i + 1)))?;
        }
        Ok(Trust {
            extra: Some((path.to_path_buf(), Arc::new(certs))),
        })
    }

    /// The file of the extra CA certificates, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.extra.as_ref().map(|(p, _)| p.as_path())
    }

    /// ureq's TLS configuration: its default (the bundled roots) without extra CAs, else the
    /// same roots as certificates followed by the extra ones.
    pub(crate) fn tls_config(&self) -> TlsConfig {
        let Some((_, extra)) = &self.extra else {
            return TlsConfig::default();
        };
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| Certificate::from_der(c))
            .chain(extra.iter().cloned());
        TlsConfig::builder()
            .root_certs(RootCerts::from(roots))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_usable_certificate_is_refused_by_name() {
        let p = Path::new("/etc/fleet/ca.pem");
        for (bytes, says) in [
            (&b""[..], "holds no PEM certificate"),
            (b"just text\n", "holds no PEM certificate"),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "holds no PEM certificate",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificate 1 is not usable",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "not a PEM file",
            ),
        ] {
            let e = Trust::with_ca_pem(p, bytes)
                .expect_err("refused")
                .to_string();
            assert!(
                e.starts_with("/etc/fleet/ca.pem: ") && e.contains(says),
                "{e}"
            );
        }
        let e = Trust::with_ca_file(Path::new("/nonexistent/ca.pem"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(Trust::default().ca_file().is_none());
    }

    #[test]
    fn the_bundled_roots_are_certificates_rustls_accepts() {
        let mut store = rustls::RootCertStore::empty();
        let (added, ignored) =
            store.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec());
        assert!(
            added > 100 && ignored == 0,
            "{added} added, {ignored} ignored"
        );
    }
}
