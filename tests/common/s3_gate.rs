//! A gate between osimage and Garage for the store tests (docs/STORE.md §12.3, §4.4): a plain
//! TCP proxy on 127.0.0.1 that forwards every request as it came (SigV4 signatures cover the
//! Host header the client sent, which Garage checks as received) and lets through only a set
//! number of pack PUTs (`PUT …/packs/…`); later ones are held, never forwarded, until the
//! client goes away. A capture behind it stops at a known point: every upload thread waiting
//! on a held PUT, everything before them up and answered. No timing is involved.
//!
//! Requests are read one at a time per connection (head, then a `Content-Length` body);
//! answers are copied back byte for byte by a thread of their own.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the gate let through and holds.
#[derive(Default)]
pub struct GateCounts {
    /// Pack PUTs still to let through.
    pub packs_allowed: AtomicU64,
    /// Pack PUTs forwarded so far.
    pub packs_forwarded: AtomicU64,
    /// The request lines of the pack PUTs held (never forwarded); a retry of one is the same.
    pub packs_held: Mutex<BTreeSet<String>>,
}

impl GateCounts {
    /// How many distinct packs are held.
    pub fn held(&self) -> u64 {
        self.packs_held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u64
    }
}

/// A running gate; it stops with the test process.
pub struct S3Gate {
    port: u16,
    pub counts: Arc<GateCounts>,
}

impl S3Gate {
    /// A gate in front of the S3 endpoint at 127.0.0.1:`upstream` that forwards
    /// `packs_allowed` pack PUTs and holds the rest.
    pub fn start(upstream: u16, packs_allowed: u64) -> S3Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the gate");
        let port = listener.local_addr().expect("gate address").port();
        let counts = Arc::new(GateCounts::default());
        counts.packs_allowed.store(packs_allowed, Ordering::SeqCst);
        let c = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let c = c.clone();
                std::thread::spawn(move || relay(client, upstream, &c));
            }
        });
        S3Gate { port, counts }
    }

    /// The endpoint to give osimage (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits (polling, up to 10 minutes) until `n` distinct pack PUTs are held.
    pub fn wait_held(&self, n: u64) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(600);
        while self.counts.held() < n {
            assert!(
                std::time::Instant::now() < until,
                "the gate holds {} pack PUTs, not {n}, after 10 minutes (forwarded {})",
                self.counts.held(),
                self.counts.packs_forwarded.load(Ordering::SeqCst)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Relays one client connection: requests up (or held), answers down.
fn relay(client: TcpStream, upstream: u16, counts: &GateCounts) {
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (Ok(mut down), Ok(mut from_up)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_up, &mut down);
        let _ = down.shutdown(std::net::Shutdown::Both);
    });
    let mut reader = BufReader::new(client);
    loop {
        let Some((head, body)) = read_request(&mut reader) else {
            let _ = up.shutdown(std::net::Shutdown::Both);
            return;
        };
        let first = head.lines().next().unwrap_or("");
        if first.starts_with("PUT ") && first.contains("/packs/") {
            let allowed =
                counts
                    .packs_allowed
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if allowed.is_err() {
                let target = first.split(' ').nth(1).unwrap_or("").split('?').next();
                let mut held = counts.packs_held.lock().unwrap_or_else(|p| p.into_inner());
                held.insert(target.unwrap_or("").to_string());
                drop(held);
                // Held: nothing more is read or forwarded; the client's end closing ends it.
                let mut rest = [0u8; 1];
                while matches!(reader.read(&mut rest), Ok(n) if n > 0) {}
                return;
            }
            counts.packs_forwarded.fetch_add(1, Ordering::SeqCst);
        }
        if up.write_all(head.as_bytes()).is_err() || up.write_all(&body).is_err() {
            return;
        }
    }
}

/// One request: its head (request line and headers, through the blank line) and its body.
pub(super) fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().expect("a Content-Length");
        }
        assert!(
            !lower.starts_with("transfer-encoding:"),
            "the gate reads Content-Length bodies only: {line}"
        );
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}
