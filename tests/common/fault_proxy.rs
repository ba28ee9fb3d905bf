//! A relay in front of Garage that fails requests on a fixed schedule (docs/STORE.md §12.4,
//! issue #22's "a loopback proxy that truncates responses and returns 503s"): of the
//! requests it sees, every `busy_every`-th is answered `503 SlowDown` without reaching the
//! server, and every `cut_every`-th answer with a body is cut after half of its body, the
//! connection closed. Everything else is relayed as it came: requests are forwarded byte for
//! byte (SigV4 signs the Host the client sent, which the server checks) but for a
//! `Connection: close` header added, unsigned, so each answer ends where its connection does.
//! No timing is involved: the schedule counts requests.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::s3_gate::read_request;

/// What the relay did.
#[derive(Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    /// Answered 503 by the relay itself.
    pub busy: AtomicU64,
    /// Answers cut in their body.
    pub cut: AtomicU64,
}

/// A running relay; its threads live until the test process ends.
pub struct FaultProxy {
    port: u16,
    pub counts: Arc<FaultCounts>,
}

impl FaultProxy {
    /// Relays 127.0.0.1:<new port> to 127.0.0.1:`upstream` on the schedule above.
    pub fn start(upstream: u16, busy_every: u64, cut_every: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault proxy");
        let port = listener.local_addr().expect("its address").port();
        let counts = Arc::new(FaultCounts::default());
        let c = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let c = c.clone();
                std::thread::spawn(move || serve(client, upstream, busy_every, cut_every, &c));
            }
        });
        FaultProxy { port, counts }
    }

    /// The endpoint to give osimage (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The requests of one client connection, one after the other.
fn serve(client: TcpStream, upstream: u16, busy_every: u64, cut_every: u64, c: &FaultCounts) {
    let Ok(mut down) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(client);
    while let Some((head, body)) = read_request(&mut reader) {
        let n = c.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(busy_every) {
            c.busy.fetch_add(1, Ordering::SeqCst);
            let text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate (fault proxy)</Message></Error>";
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = down.write_all(answer.as_bytes());
            let _ = down.shutdown(Shutdown::Both);
            return;
        }
        let Some(answer) = forward(upstream, &head, &body) else {
            let _ = down.shutdown(Shutdown::Both);
            return;
        };
        let body_at = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(answer.len(), |p| p + 4);
        if n.is_multiple_of(cut_every) && answer.len() > body_at + 1 {
            c.cut.fetch_add(1, Ordering::SeqCst);
            let half = body_at + (answer.len() - body_at) / 2;
            let _ = down.write_all(&answer[..half]);
            let _ = down.shutdown(Shutdown::Both);
            return;
        }
        if down.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Sends one request upstream with `Connection: close` and returns the whole answer.
fn forward(upstream: u16, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    let kept: String = head
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let head = kept.strip_suffix("\r\n")?;
    up.write_all(head.as_bytes()).ok()?;
    up.write_all(b"Connection: close\r\n\r\n").ok()?;
    up.write_all(body).ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).ok()?;
    Some(answer)
}
