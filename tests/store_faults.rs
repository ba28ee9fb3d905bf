//! Reading a store version through a relay that fails requests on a fixed schedule
//! (docs/STORE.md §12.4, issue #22's faults): every 7th request answered `503 SlowDown` by
//! the relay, every 5th answer cut in the middle of its body (`common::fault_proxy`). The read
//! retries and resumes, and the files come back identical.

use crate::common;

use common::fault_proxy::FaultProxy;
use common::garage::Garage;
use std::sync::atomic::Ordering;

#[test]
fn a_read_through_503s_and_cut_answers_completes_identical() {
    let g = Garage::start();
    let env = g.osimage_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = common::scratch();
    let root = dir.path().join("root");
    for d in 0..3u64 {
        let sub = root.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("noise.bin"), common::iso::noise(5 << 20, d)).unwrap();
        for f in 0..10 {
            std::fs::write(
                sub.join(format!("t{f}.txt")),
                format!("{d}/{f}\n").repeat(300),
            )
            .unwrap();
        }
    }
    let store = "s3://images/faults";
    common::osimage_env(["store", "init", store, "--pack-size", "8M"], &pairs).ok();
    let address = format!("{store}/files");
    let root_arg = root.to_str().unwrap();
    common::osimage_env(["capture", root_arg, "-o", &address, "-q"], &pairs).ok();

    let proxy = FaultProxy::start(g.s3_port(), 7, 5);
    let endpoint = proxy.endpoint();
    let mut faulty = pairs.clone();
    faulty.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    faulty.push(("AWS_ENDPOINT_URL", &endpoint));
    let out = dir.path().join("out");
    let run = common::osimage_env(
        ["extract", address.as_str(), "-C", out.to_str().unwrap()],
        &faulty,
    )
    .ok();
    let (busy, cut) = (
        proxy.counts.busy.load(Ordering::SeqCst),
        proxy.counts.cut.load(Ordering::SeqCst),
    );
    eprintln!(
        "store_faults: {} requests, {busy} answered 503, {cut} cut; {}",
        proxy.counts.requests.load(Ordering::SeqCst),
        run.stderr.trim()
    );
    assert!(
        busy > 0 && cut > 0,
        "the relay failed nothing: {busy} 503s, {cut} cuts"
    );
    common::same_files(&root, &out);
}
