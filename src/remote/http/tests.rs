//! Tests of `HttpObject` against std-only fake servers.
use super::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

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

/// An object made of `fakes`' objects, each `extra` bytes longer than `sizes` says.
fn parts_object(fakes: &[&Fake], sizes: &[usize], extra: &[u64]) -> HttpObject {
    let urls: Vec<_> = fakes
        .iter()
        .zip(sizes)
        .zip(extra)
        .map(|((f, n), x)| (format!("{}?sig=secret", f.url), *n as u64 + x))
        .collect();
    let policy = RetryPolicy {
        retry_for: Duration::from_secs(5),
        waiting_every: Duration::ZERO,
        ..RetryPolicy::default()
    };
    HttpObject::open_urls(&urls, "whole".into(), policy, &Trust::default()).expect("open")
}

fn asked(fakes: &[&Fake]) -> Vec<u64> {
    fakes
        .iter()
        .map(|f| f.requests.load(Ordering::SeqCst))
        .collect()
}

#[test]
fn parts_read_as_their_concatenation_one_part_per_request() {
    let sizes = [300 << 10, 1000 << 10, (200 << 10) + 7];
    let datas: Vec<_> = sizes
        .iter()
        .map(|&n| pattern(n + 1)[1..].to_vec())
        .collect();
    let whole: Vec<u8> = datas.concat();
    let fakes: Vec<_> = datas.iter().map(|d| fake(d.clone())).collect();
    let fakes: Vec<_> = fakes.iter().collect();
    let obj = parts_object(&fakes, &sizes, &[0, 0, 0]);
    assert_eq!(asked(&fakes), [0, 0, 0], "no request at open");
    assert_eq!(obj.len(), whole.len() as u64);
    assert_eq!(obj.describe(), "whole");
    // a block across the first boundary: one request to each side
    let b0 = sizes[0] as u64;
    let mut buf = vec![0u8; 64 << 10];
    obj.read_exact_at(&mut buf, b0 - 1000).expect("across");
    assert_eq!(buf, whole[b0 as usize - 1000..][..64 << 10]);
    assert_eq!(asked(&fakes), [1, 1, 0]);
    // a small read through the page that holds the boundary: the page is split too
    let mut small = [0u8; 100];
    obj.read_exact_at(&mut small, b0 - 50).expect("paged");
    assert_eq!(small, whole[b0 as usize - 50..][..100]);
    assert_eq!(asked(&fakes), [2, 2, 0]);
    // a plan of the whole in 100 KiB blocks (those the page holds are left out): runs stop
    // at the parts' ends, one request per part
    let block = 100 << 10;
    let ranges: Vec<_> = (0..whole.len() as u64)
        .step_by(block)
        .map(|a| (a, (block as u64).min(whole.len() as u64 - a)))
        .collect();
    obj.plan(ranges.clone());
    for &(a, l) in &ranges {
        buf.resize(l as usize, 0);
        obj.read_exact_at(&mut buf, a).expect("planned read");
        assert_eq!(buf, whole[a as usize..(a + l) as usize], "bytes at {a}");
    }
    assert_eq!(asked(&fakes), [3, 3, 1]);
    assert_eq!(obj.stats().requests, 7, "one set of counters");
    // forget sends the next read of those bytes to the server of their part
    buf.resize(4096, 0);
    obj.read_exact_at(&mut buf, b0 + 10).expect("kept");
    assert_eq!(asked(&fakes), [3, 3, 1]);
    assert!(obj.forget(b0 + 10, 4096));
    obj.read_exact_at(&mut buf, b0 + 10).expect("again");
    assert_eq!(buf, whole[b0 as usize + 10..][..4096]);
    assert_eq!(asked(&fakes), [3, 4, 1]);
    assert_eq!(obj.stats().refetched, 1);
}

#[test]
fn a_part_whose_length_differs_is_named_and_not_retried() {
    let sizes = [100 << 10, 100 << 10];
    let fakes: Vec<_> = sizes.iter().map(|&n| fake(pattern(n))).collect();
    let fakes: Vec<_> = fakes.iter().collect();
    // the manifest says the second part has one byte more than the server holds
    let obj = parts_object(&fakes, &sizes, &[0, 1]);
    let mut buf = vec![0u8; 8 << 10];
    obj.read_exact_at(&mut buf, 0).expect("the first part");
    let e = obj
        .read_exact_at(&mut buf, (100 << 10) + 10)
        .expect_err("replaced");
    let msg = e.to_string();
    let part = &fakes[1].url;
    assert!(
        msg.starts_with(&format!("{part}: it has 102400 bytes, 102401 expected")),
        "{msg}"
    );
    assert!(msg.contains("the object was replaced"), "{msg}");
    assert!(!msg.contains("secret"), "{msg}");
    assert_eq!(asked(&fakes), [1, 1], "not retried");
    // a refusal names the part too
    fakes[0].fail_at.store(0, Ordering::SeqCst);
    let e = obj.read_exact_at(&mut buf, 20 << 10).expect_err("404");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{}: ", fakes[0].url)), "{msg}");
    assert!(msg.contains("HTTP 404"), "{msg}");
}

/// An object of `f` with `connections` fetchers and a `mib` MiB fetch cache.
fn object_with(f: &Fake, connections: usize, mib: u64) -> HttpObject {
    let policy = RetryPolicy {
        retry_for: Duration::from_secs(5),
        waiting_every: Duration::ZERO,
        connections,
        fetch_cache: mib * MIB,
        ..RetryPolicy::default()
    };
    HttpObject::open(&f.url, policy, &Trust::default()).expect("open")
}

/// Waits until `f` has answered `n` requests (10 s at most).
fn wait_requests(f: &Fake, n: u64) {
    let t = Instant::now();
    while f.requests.load(Ordering::SeqCst) < n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{n} requests never came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_fetch_cache_bounds_what_is_fetched_ahead_of_the_reader() {
    // eight 1 MiB ranges 3 MiB apart: eight runs
    let data = pattern(32 * MIB as usize);
    let ranges: Vec<_> = (0..8).map(|i| (MIB + i * 3 * MIB, MIB)).collect();
    let f = fake(data.clone());
    let obj = object_with(&f, 4, 1);
    assert_eq!(obj.inner.connections.load(Ordering::Relaxed), 4);
    obj.plan(ranges.clone());
    // the probe and one run: a 1 MiB cache holds one run fetched and not read
    wait_requests(&f, 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        f.requests.load(Ordering::SeqCst),
        2,
        "nothing past the cache"
    );
    let mut buf = vec![0u8; MIB as usize];
    obj.read_exact_at(&mut buf, ranges[0].0).expect("read");
    assert_eq!(buf, data[MIB as usize..2 * MIB as usize]);
    // the read made room for the next run
    wait_requests(&f, 3);
    // the default cache takes all eight ahead without a read
    let g = fake(data);
    let obj = object_with(&g, 4, 128);
    obj.plan(ranges);
    wait_requests(&g, 9);
}
