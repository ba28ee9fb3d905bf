//! A small HTTP/1.1 server on 127.0.0.1 for the tests that read images over HTTP
//! (docs/STORE.md §12.3): std only, one thread per connection, keep-alive, `Range:
//! bytes=a-b` answered with 206 and `Content-Range`. Fault switches make it misbehave the
//! ways §7.3 names: ignore Range (200 with the whole file), cut one body short, answer 503 a
//! number of times, report another length after some requests (the object changed).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the server does wrong, switched on by the test.
#[derive(Default)]
pub struct Faults {
    /// Answer every request with 200 and the whole file.
    pub ignore_range: AtomicBool,
    /// Answer this many more requests with 503.
    pub unavailable: AtomicU64,
    /// Answer every request with 503 until then: a server that is down for a while.
    pub down_until: Mutex<Option<std::time::Instant>>,
    /// Cut the body of response number `.0` (1-based, counting every answer) after `.1`
    /// bytes and close the connection.
    pub cut: Mutex<Option<(u64, u64)>>,
    /// From this answer on (1-based), the file is one byte longer: replaced on the server.
    pub grow_from: AtomicU64,
    /// Damage in flight: flip (xor 0xff) the byte at object offset `at` in the bodies of the
    /// next `times` answers (`u64::MAX`: every one) to a range starting at `start`, or to a
    /// range longer than a 256 KiB page that holds `at` (a planned run, STORE.md §7.2.1; the
    /// pages an image is opened with are left alone).
    pub flip: Mutex<Option<Flip>>,
    /// Bodies damaged by `flip` so far.
    pub flipped: AtomicU64,
}

/// Where `Faults::flip` damages a body, and how many times more.
#[derive(Clone, Copy, Debug)]
pub struct Flip {
    pub at: u64,
    pub start: u64,
    pub times: u64,
}

/// A running server; it stops with the test process.
pub struct Server {
    port: u16,
    scheme: &'static str,
    pub faults: Arc<Faults>,
    /// Answers given so far (every status).
    pub answers: Arc<AtomicU64>,
    /// Every request target received, query included.
    pub targets: Arc<Mutex<Vec<String>>>,
    /// Body bytes sent so far.
    pub sent: Arc<AtomicU64>,
}

struct Shared {
    files: HashMap<String, PathBuf>,
    faults: Arc<Faults>,
    answers: Arc<AtomicU64>,
    targets: Arc<Mutex<Vec<String>>>,
    sent: Arc<AtomicU64>,
}

impl Server {
    /// Serves each `(name, file)` at `/name`; anything else is 404.
    pub fn start(files: &[(&str, PathBuf)]) -> Server {
        Self::start_with(files, None)
    }

    /// The same over HTTPS (TLS 1.2 or 1.3, rustls with ring), with the certificate `tls`
    /// holds; `url` then says `https://`.
    pub fn start_tls(files: &[(&str, PathBuf)], tls: &TestCa) -> Server {
        Self::start_with(files, Some(tls.server_config()))
    }

    fn start_with(files: &[(&str, PathBuf)], tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            files: files
                .iter()
                .map(|(n, p)| (format!("/{n}"), p.clone()))
                .collect(),
            faults: Arc::new(Faults::default()),
            answers: Arc::new(AtomicU64::new(0)),
            targets: Arc::new(Mutex::new(Vec::new())),
            sent: Arc::new(AtomicU64::new(0)),
        });
        let server = Server {
            port,
            scheme: if tls.is_some() { "https" } else { "http" },
            faults: shared.faults.clone(),
            answers: shared.answers.clone(),
            targets: shared.targets.clone(),
            sent: shared.sent.clone(),
        };
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let shared = shared.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    // A failed handshake (a client that does not trust us) ends the connection.
                    let _ = match tls {
                        None => serve_connection(conn, &shared),
                        Some(config) => rustls::ServerConnection::new(config)
                            .map_err(std::io::Error::other)
                            .and_then(|tls| {
                                serve_connection(rustls::StreamOwned::new(tls, conn), &shared)
                            }),
                    };
                });
            }
        });
        server
    }

    /// The URL of `name` on this server (`name` may carry a query).
    pub fn url(&self, name: &str) -> String {
        format!("{}://127.0.0.1:{}/{name}", self.scheme, self.port)
    }
}

/// A certificate authority made for one test run, and a server certificate it signed for
/// 127.0.0.1 and localhost: what a fleet's internal HTTPS server has.
pub struct TestCa {
    /// The CA's certificate, PEM: what `--ca` is given.
    pub ca_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "osimage test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .expect("server parameters");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        TestCa {
            ca_pem: ca_cert.pem(),
            server_cert: cert.der().clone(),
            server_key: key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        // ring is the provider ureq itself uses; that it has no post-quantum key exchange
        // (why rustls deprecates it) does not matter on loopback.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.server_key.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)
            .expect("server certificate and key");
        Arc::new(config)
    }
}

/// Answers requests on one connection until the client closes it or a fault cuts it.
fn serve_connection<S: Read + Write>(conn: S, s: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("range")
            {
                range = Some(v.trim().to_string());
            }
        }
        s.targets.lock().unwrap().push(target.to_string());
        let n = s.answers.fetch_add(1, Ordering::SeqCst) + 1;
        // A cut body: the connection is dropped, which closes it.
        if !answer(reader.get_mut(), s, n, method, target, range.as_deref())? {
            return Ok(());
        }
    }
}

/// Writes answer number `n`; false when the connection must close (a cut body).
fn answer(
    out: &mut impl Write,
    s: &Shared,
    n: u64,
    method: &str,
    target: &str,
    range: Option<&str>,
) -> std::io::Result<bool> {
    let f = &s.faults;
    if f.unavailable
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
        .is_ok()
    {
        head(out, "503 Service Unavailable", 0, &[])?;
        return Ok(true);
    }
    if f.down_until
        .lock()
        .unwrap()
        .is_some_and(|t| std::time::Instant::now() < t)
    {
        head(out, "503 Service Unavailable", 0, &[])?;
        return Ok(true);
    }
    let path = target.split('?').next().unwrap_or("");
    let Some(file) = s.files.get(path) else {
        head(out, "404 Not Found", 0, &[])?;
        return Ok(true);
    };
    let mut file = std::fs::File::open(file)?;
    let real = file.metadata()?.len();
    let grow = f.grow_from.load(Ordering::SeqCst);
    let len = if grow != 0 && n >= grow {
        real + 1
    } else {
        real
    };
    let ignore = f.ignore_range.load(Ordering::SeqCst);
    let Some((status, first, last)) = resolve(range.filter(|_| !ignore), len) else {
        let cr = format!("Content-Range: bytes */{len}");
        head(out, "416 Range Not Satisfiable", 0, &[&cr])?;
        return Ok(true);
    };
    let body_len = if len == 0 { 0 } else { last - first + 1 };
    let cr = format!("Content-Range: bytes {first}-{last}/{len}");
    let extra: Vec<&str> = if status.starts_with("206") {
        vec![&cr]
    } else {
        vec![]
    };
    head(out, status, body_len, &extra)?;
    if method == "HEAD" {
        return Ok(true);
    }
    let cut = take_cut(f, n).map(|bytes| bytes.min(body_len));
    let send = cut.unwrap_or(body_len);
    file.seek(SeekFrom::Start(first))?;
    let mut body = Vec::new();
    file.take(send).read_to_end(&mut body)?;
    // The grown file's last byte, past the real end.
    body.resize(send as usize, 0);
    flip_in_flight(f, first, &mut body);
    out.write_all(&body)?;
    s.sent.fetch_add(body.len() as u64, Ordering::SeqCst);
    out.flush()?;
    Ok(cut.is_none())
}

/// The status and byte range answering `range` (`bytes=a-b` or `bytes=a-`) of an object of
/// `len` bytes: the whole object without one, `None` when it cannot be satisfied (416).
fn resolve(range: Option<&str>, len: u64) -> Option<(&'static str, u64, u64)> {
    let Some(r) = range else {
        return Some(("200 OK", 0, len.saturating_sub(1)));
    };
    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
    let first: u64 = a.parse().ok()?;
    let last = b
        .parse::<u64>()
        .unwrap_or(u64::MAX)
        .min(len.checked_sub(1)?);
    (first <= last).then_some(("206 Partial Content", first, last))
}

/// Applies `Faults::flip` to `body`, the object's bytes from `first` on.
fn flip_in_flight(f: &Faults, first: u64, body: &mut [u8]) {
    let mut flip = f.flip.lock().unwrap();
    let Some(Flip { at, start, times }) = *flip else {
        return;
    };
    let Some(i) = at.checked_sub(first).filter(|i| *i < body.len() as u64) else {
        return;
    };
    let run = body.len() as u64 > 256 << 10;
    if (first != start && !run) || times == 0 {
        return;
    }
    body[i as usize] ^= 0xff;
    f.flipped.fetch_add(1, Ordering::SeqCst);
    if times != u64::MAX {
        *flip = Some(Flip {
            times: times - 1,
            ..Flip { at, start, times }
        });
    }
}

/// The cut planned for answer `n`, if any: taken, so it happens once.
fn take_cut(f: &Faults, n: u64) -> Option<u64> {
    let mut c = f.cut.lock().unwrap();
    match *c {
        Some((at, _)) if at == n => c.take().map(|(_, b)| b),
        _ => None,
    }
}

fn head(out: &mut impl Write, status: &str, len: u64, extra: &[&str]) -> std::io::Result<()> {
    let mut h = format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\n");
    for e in extra {
        h.push_str(e);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    out.write_all(h.as_bytes())
}
