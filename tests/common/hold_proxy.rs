//! A TCP relay in front of a local server that holds one request until the test releases
//! it: the first request whose bytes contain a given text (such as `PUT /images/p/index/`)
//! is not forwarded until [`HoldProxy::release`]. So a test can stop a client at a known
//! step (a capture just before its commit, STORE.md §4.3) without guessing how long the steps
//! before it take. Everything else is relayed unchanged, both ways; after the release the
//! text is no longer looked for.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The relay; its threads live until the test process ends.
pub struct HoldProxy {
    port: u16,
    state: Arc<(Mutex<Hold>, Condvar)>,
}

#[derive(Default)]
struct Hold {
    /// A matching request is waiting.
    held: bool,
    released: bool,
}

impl HoldProxy {
    /// Relays 127.0.0.1:<new port> to 127.0.0.1:`upstream`, holding the first request
    /// that contains `text`.
    pub fn start(upstream: u16, text: &str) -> HoldProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let state = Arc::new((Mutex::new(Hold::default()), Condvar::new()));
        let (s, pattern) = (Arc::clone(&state), text.as_bytes().to_vec());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)) else {
                    continue;
                };
                relay(client, server, Arc::clone(&s), pattern.clone());
            }
        });
        HoldProxy { port, state }
    }

    /// The endpoint clients use: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until a matching request is held; false after `limit` without one.
    pub fn wait_held(&self, limit: Duration) -> bool {
        let (m, cv) = &*self.state;
        let end = Instant::now() + limit;
        let mut h = m.lock().unwrap();
        while !h.held {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            h = cv.wait_timeout(h, left).unwrap().0;
        }
        true
    }

    /// Lets the held request (and every later one) through.
    pub fn release(&self) {
        let (m, cv) = &*self.state;
        m.lock().unwrap().released = true;
        cv.notify_all();
    }
}

/// Copies both ways; the client's bytes are checked for `pattern` until the release.
fn relay(
    client: TcpStream,
    server: TcpStream,
    state: Arc<(Mutex<Hold>, Condvar)>,
    pattern: Vec<u8>,
) {
    let (Ok(mut from_server), Ok(mut to_client)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let (mut client, mut server) = (client, server);
        let mut buf = vec![0u8; 64 << 10];
        // The last bytes seen, so a pattern split across two reads is found.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(&buf[..n]);
            hold_if_matching(&state, &window, &pattern);
            let keep = window.len().min(pattern.len());
            tail = window[window.len() - keep..].to_vec();
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(Shutdown::Both);
    });
}

/// Blocks while `window` holds `pattern` and the test has not released it.
fn hold_if_matching(state: &(Mutex<Hold>, Condvar), window: &[u8], pattern: &[u8]) {
    let (m, cv) = state;
    let mut h = m.lock().unwrap();
    if h.released || !window.windows(pattern.len()).any(|w| w == pattern) {
        return;
    }
    h.held = true;
    cv.notify_all();
    while !h.released {
        h = cv.wait(h).unwrap();
    }
}
