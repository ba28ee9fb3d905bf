//! A small HTTP/1.1 server on 127.0.0.1 for the tests that read images over HTTP
//! (docs/STORE.md §12.3): std only, one thread per connection, keep-alive, `Range:
//! bytes=a-b` answered with 206 and `Content-Range`. Fault switches make it misbehave the
//! ways §7.3 names: ignore Range (200 with the whole file), cut one body short, answer 503 a
//! number of times, report another length after some requests (the object changed).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
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
    /// Cut the body of response number `.0` (1-based, counting every answer) after `.1`
    /// bytes and close the connection.
    pub cut: Mutex<Option<(u64, u64)>>,
    /// From this answer on (1-based), the file is one byte longer: replaced on the server.
    pub grow_from: AtomicU64,
    /// Damage in flight: flip (xor 0xff) the byte at object offset `at` in the bodies of the
    /// next `times` answers (`u64::MAX`: every one) to a range starting at `start`.
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
    pub faults: Arc<Faults>,
    /// Answers given so far (every status).
    pub answers: Arc<AtomicU64>,
    /// Every request target received, query included.
    pub targets: Arc<Mutex<Vec<String>>>,
}

struct Shared {
    files: HashMap<String, PathBuf>,
    faults: Arc<Faults>,
    answers: Arc<AtomicU64>,
    targets: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serves each `(name, file)` at `/name`; anything else is 404.
    pub fn start(files: &[(&str, PathBuf)]) -> Server {
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
        });
        let server = Server {
            port,
            faults: shared.faults.clone(),
            answers: shared.answers.clone(),
            targets: shared.targets.clone(),
        };
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve_connection(conn, &shared);
                });
            }
        });
        server
    }

    /// The URL of `name` on this server (`name` may carry a query).
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

/// Answers requests on one connection until the client closes it or a fault cuts it.
fn serve_connection(conn: TcpStream, s: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
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
        if !answer(&mut out, s, n, method, target, range.as_deref())? {
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Writes answer number `n`; false when the connection must close (a cut body).
fn answer(
    out: &mut TcpStream,
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
    if first != start || times == 0 {
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

fn head(out: &mut TcpStream, status: &str, len: u64, extra: &[&str]) -> std::io::Result<()> {
    let mut h = format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\n");
    for e in extra {
        h.push_str(e);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    out.write_all(h.as_bytes())
}
