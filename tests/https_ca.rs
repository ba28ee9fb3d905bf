//! Images read over HTTPS from a server whose certificate an internal CA signed (issue #22,
//! docs/STORE.md §7.3): with `--ca FILE` (or `OSIMAGE_CA`) `info` and `extract` say and write
//! what they do for the local file; without it the read stops at once, saying that the
//! certificate is not trusted and how to trust it; a CA file that holds no usable certificate
//! is a usage error naming it. The CA and the server certificate are made at test time
//! (`common::http::TestCa`), the server is `tests/common/http.rs`'s over rustls.

use crate::common;
use crate::http_read::{images, info, osimage, s};

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::compare::{Options, assert_no_differences, diff_trees};
use common::http::{Server, TestCa};

/// A CA, its certificate in a file of `dir`, and an HTTPS server of the fixture's images.
fn serve_tls(dir: &Path) -> (Server, PathBuf, TestCa) {
    let i = images();
    let ca = TestCa::new();
    let pem = dir.join("ca.pem");
    std::fs::write(&pem, &ca.ca_pem).expect("write ca.pem");
    let server = Server::start_tls(
        &[
            ("system.oimg", i.oimg.clone()),
            ("system.iso", i.iso.clone()),
        ],
        &ca,
    );
    (server, pem, ca)
}

/// `args` and `--ca pem`.
fn with_ca<'a>(args: &[&'a OsStr], pem: &'a Path) -> Vec<&'a OsStr> {
    [args, &[s("--ca"), pem.as_os_str()]].concat()
}

#[test]
fn an_https_image_reads_as_the_file_with_its_ca_given() {
    let i = images();
    let dir = common::scratch();
    let (server, pem, _ca) = serve_tls(dir.path());
    let url = server.url("system.iso");
    assert!(url.starts_with("https://"), "{url}");

    let run = osimage(&with_ca(&[s("info"), s(&url), s("--json")], &pem)).ok();
    let mut remote: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("info --json ({e}): {}", run.describe()));
    remote.get_mut("image").map(|v| v.take());
    assert_eq!(remote, info(i.iso.as_os_str()), "info --json");

    let over_https = dir.path().join("over-https");
    let from_file = dir.path().join("from-file");
    let extract = [s("extract"), s(&url), s("-C"), over_https.as_os_str()];
    osimage(&with_ca(&extract, &pem)).ok();
    osimage(&[
        s("extract"),
        i.iso.as_os_str(),
        s("-C"),
        from_file.as_os_str(),
    ])
    .ok();
    let diffs = diff_trees(&from_file, &over_https, Options { nlink: true });
    assert_no_differences(&diffs, "extract over HTTPS vs the file");

    // OSIMAGE_CA when --ca is not given.
    let oimg = server.url("system.oimg");
    let env = [("OSIMAGE_CA", pem.to_str().expect("utf-8"))];
    let listed = common::osimage_env(["list", "-l", &oimg], &env).ok();
    let local = osimage(&[s("list"), s("-l"), i.oimg.as_os_str()]).ok();
    assert_eq!(listed.stdout, local.stdout, "list -l with OSIMAGE_CA");
}

#[test]
fn an_untrusted_certificate_stops_at_once_naming_ca() {
    let dir = common::scratch();
    let (server, _pem, _ca) = serve_tls(dir.path());
    let url = server.url("system.oimg");
    let run = osimage(&[s("info"), s(&url)]).fails();
    assert!(
        run.stderr.contains(&url)
            && run.stderr.contains(
                "the server's certificate is not trusted: it is signed by a CA that is not \
                 among the bundled roots (give that CA's certificate with --ca FILE"
            ),
        "{}",
        run.describe()
    );
    assert!(
        !run.stderr.contains("gave up after retrying"),
        "not retried: {}",
        run.describe()
    );
    assert_eq!(
        server.answers.load(Ordering::SeqCst),
        0,
        "no request served"
    );

    // Another CA's certificate does not make it trusted, and the message says which file.
    let other = TestCa::new();
    let wrong = dir.path().join("other-ca.pem");
    std::fs::write(&wrong, &other.ca_pem).expect("write");
    let run = osimage(&with_ca(&[s("list"), s(&url)], &wrong)).fails();
    let says = format!("nor the CA certificates in {}", wrong.display());
    assert!(
        run.stderr.contains("certificate is not trusted") && run.stderr.contains(&says),
        "{}",
        run.describe()
    );
}

#[test]
fn a_ca_file_without_a_usable_certificate_is_a_usage_error_naming_it() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let (server, _pem, ca) = serve_tls(dir);
    let url = server.url("system.oimg");
    let missing = dir.join("no-such-ca.pem");
    let text = dir.join("not-a-ca.pem");
    std::fs::write(&text, "hello\n").expect("write");
    let broken = dir.join("broken-ca.pem");
    // The CA's PEM with its base64 body cut short: a certificate that does not parse.
    let cut: String = ca.ca_pem.lines().take(4).collect::<Vec<_>>().join("\n");
    std::fs::write(&broken, format!("{cut}\n-----END CERTIFICATE-----\n")).expect("write");
    for file in [&missing, &text, &broken] {
        let run = osimage(&with_ca(&[s("info"), s(&url)], file)).usage_error();
        assert!(
            run.stderr.contains(&file.display().to_string()),
            "{}",
            run.describe()
        );
        let env = [("OSIMAGE_CA", file.to_str().expect("utf-8"))];
        common::osimage_env(["info", &url], &env).usage_error();
    }
    assert_eq!(server.answers.load(Ordering::SeqCst), 0, "nothing was read");
}
