//! Tests of `HttpObject` against std-only fake servers.
use super::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::AtomicU64;

/// A std-only Range server of one object: each answer on its own connection. Ranges
/// that start at `fail_at` or after get `fail_status` and no body.
struct Fake {
    url: String,
    requests: Arc<AtomicU64>,
    fail_at: Arc<AtomicU64>,
    fail_status: Arc<AtomicU64>,
}

fn fake(data: Vec<u8>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/object", listener.local_addr().expect("addr"));
    let data = Arc::new(data);
    let requests = Arc::new(AtomicU64::new(0));
    let fail_at = Arc::new(AtomicU64::new(u64::MAX));
    let fail_status = Arc::new(AtomicU64::new(404));
    let (n, at, st) = (requests.clone(), fail_at.clone(), fail_status.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (data, n, at, st) = (data.clone(), n.clone(), at.clone(), st.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn);
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line.trim_end().is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("range: bytes=") {
                        let (a, b) = v.trim().split_once('-').expect("a-b");
                        range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()));
                    }
                }
                n.fetch_add(1, Ordering::SeqCst);
                let (a, b) = range.expect("a Range request");
                let out = r.get_mut();
                if a >= at.load(Ordering::SeqCst) {
                    let status = st.load(Ordering::SeqCst);
                    let _ = write!(
                        out,
                        "HTTP/1.1 {status} No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    return;
                }
                let b = b.min(data.len() as u64 - 1);
                let _ = write!(
                    out,
                    "HTTP/1.1 206 Partial\r\nContent-Range: bytes {a}-{b}/{}\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    data.len(),
                    b - a + 1
                );
                let _ = out.write_all(&data[a as usize..=b as usize]);
            });
        }
    });
    Fake {
        url,
        requests,
        fail_at,
        fail_status,
    }
}

fn object(f: &Fake, retry_for: u64) -> HttpObject {
    let policy = RetryPolicy {
        retry_for: Duration::from_secs(retry_for),
        waiting_every: Duration::ZERO,
        ..RetryPolicy::default()
    };
    HttpObject::open(&f.url, policy, &Trust::default()).expect("open")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

const MIB: u64 = 1 << 20;

#[test]
fn planned_blocks_come_in_few_requests_and_as_the_object_holds_them() {
    let data = pattern(40 * MIB as usize + 123);
    let f = fake(data.clone());
    let obj = object(&f, 5);
    // 200 KiB blocks back to back from 1 MiB to the end: 39 MiB in 3 runs
    let block = 200 << 10;
    let ranges: Vec<_> = (0..)
        .map(|i| (MIB + i * block, block))
        .take_while(|(a, _)| *a < data.len() as u64)
        .map(|(a, l)| (a, l.min(data.len() as u64 - a)))
        .collect();
    obj.plan(ranges.clone());
    let mut buf = Vec::new();
    for &(a, l) in &ranges {
        buf.resize(l as usize, 0);
        obj.read_exact_at(&mut buf, a).expect("planned read");
        assert_eq!(buf, data[a as usize..(a + l) as usize], "bytes at {a}");
    }
    let per_run = (MAX_RUN_IN_TESTS / block) as usize;
    let runs = ranges.len().div_ceil(per_run) as u64;
    assert_eq!(runs, 3);
    let asked = f.requests.load(Ordering::SeqCst);
    assert_eq!(asked, 1 + runs, "the probe and one request per run");
    assert_eq!(obj.stats().requests, asked);
    // read once: a second read is an ordinary one, from the kept reads
    obj.read_exact_at(&mut buf[..100], ranges[0].0)
        .expect("again");
    assert_eq!(f.requests.load(Ordering::SeqCst), asked + 1);
}

const MAX_RUN_IN_TESTS: u64 = super::super::ahead::MAX_RUN;

#[test]
fn a_failed_run_is_the_error_of_the_read_that_needs_it() {
    let data = pattern(8 * MIB as usize);
    let f = fake(data.clone());
    // the second run (from 5 MiB: 2 MiB past the first) is refused
    f.fail_at.store(5 * MIB, Ordering::SeqCst);
    let obj = object(&f, 5);
    obj.plan(vec![
        (MIB, MIB),
        (2 * MIB, MIB),
        (5 * MIB, MIB),
        (6 * MIB, 10),
    ]);
    let mut buf = vec![0u8; MIB as usize];
    obj.read_exact_at(&mut buf, MIB).expect("the first run");
    assert_eq!(buf, data[MIB as usize..2 * MIB as usize]);
    let e = obj.read_exact_at(&mut buf, 5 * MIB).expect_err("refused");
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    let e = obj
        .read_exact_at(&mut buf[..10], 6 * MIB)
        .expect_err("the other piece of the run");
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    // the plan forgets a failed piece: the next read asks the server (which now answers)
    f.fail_at.store(u64::MAX, Ordering::SeqCst);
    obj.read_exact_at(&mut buf, 5 * MIB).expect("asked again");
    assert_eq!(buf, data[5 * MIB as usize..6 * MIB as usize]);
    obj.read_exact_at(&mut buf, 2 * MIB)
        .expect("unharmed piece");
    assert_eq!(buf, data[2 * MIB as usize..3 * MIB as usize]);
}

#[test]
fn dropping_the_object_ends_its_fetchers() {
    let data = pattern(80 * MIB as usize);
    let f = fake(data);
    let obj = object(&f, 600);
    // every run is answered 503: the fetchers retry (a 600 s window) until the drop
    f.fail_status.store(503, Ordering::SeqCst);
    f.fail_at.store(0, Ordering::SeqCst);
    let ranges: Vec<_> = (0..80).map(|i| (i * MIB, MIB)).collect();
    obj.plan(ranges);
    let alive = Arc::downgrade(&obj.inner);
    while f.requests.load(Ordering::SeqCst) < 4 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    drop(obj);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "the drop waits for none"
    );
    while alive.strong_count() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "fetchers still running 10 s after the drop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn s3_error_codes_are_read_only_when_plausible() {
    let body = "<?xml?><Error><Code>AccessDenied</Code><Message>x</Message></Error>";
    assert_eq!(s3_code(body), Some("AccessDenied"));
    assert_eq!(s3_code("<Code>a b</Code>"), None);
    assert_eq!(s3_code("<Code></Code>"), None);
    assert_eq!(s3_code("<Code>unterminated"), None);
    assert_eq!(s3_message(body), Some("x"));
    let said = "<Message>Forbidden: Invalid signature</Message>";
    assert_eq!(s3_message(said), Some("Forbidden: Invalid signature"));
    assert_eq!(s3_message("<Message>\x1b[2J</Message>"), None);
    let long = format!("<Message>{}</Message>", "m".repeat(201));
    assert_eq!(s3_message(&long), None);
}
