//! Planned reads (docs/STORE.md §7.2.1): the ranges a consumer says it will read, in its
//! order, become **runs** (one Range GET each) that a fetcher pool fetches ahead of it, and
//! each run is cut back into the pieces the consumer asks for. This module holds the run
//! building and the bookkeeping; `http` holds the threads and the requests.
//!
//! A piece is dropped once read (the reader also keeps it in its LRU `ReadCache`, so a
//! second thread reading the same block finds it there). Fetchers stop taking runs while
//! the bytes fetched and not yet read, plus the runs in flight, reach the budget; a consumer
//! that needs a run nobody has started fetches it itself, so a full budget never blocks it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Planned ranges this close to each other share a request: fetching up to 1 MiB not needed
/// costs less than another round trip at LAN or WAN latency.
pub const MAX_GAP: u64 = 1 << 20;
/// A gap may hold this many bytes of ranges planned before (fetched a second time).
pub const MAX_REFETCH: u64 = 512 << 10;
/// A run grows to at most this many bytes (a single range longer than that is a run alone).
pub const MAX_RUN: u64 = 16 << 20;
/// Bytes fetched ahead of the consumer and not yet read, at most (runs in flight included).
pub const DEFAULT_BUDGET: u64 = 128 << 20;
/// Runs this far behind the furthest run read from are dropped unread: a plan the consumer
/// did not follow must not hold the budget forever.
const STALE_RUNS: usize = 64;

/// One request's worth of planned ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// First byte and length of the range asked for.
    pub at: u64,
    pub len: u64,
    /// The planned `(offset, length)` ranges it holds, in plan order.
    pub pieces: Vec<(u64, u64)>,
    /// For each piece, the run the plan was building when it came: its own for the pieces
    /// that made the run, a later one for a piece that lay in this run's bytes already
    /// (planned later, fetched with this run). Staleness is judged by it (`Ahead`).
    pub planned_at: Vec<usize>,
}

/// Turns `ranges` (in the order they will be read) into runs: a range that lies whole within
/// a run made before (in a gap that run fetches anyway) is read from that run's bytes, so no
/// byte is fetched twice for it; else it joins a run (the last one made, else the one just
/// before it or just after it: plans jump between files far apart and back) when it lies at
/// most `MAX_GAP` after that run's end or before its start (the run grows back: capture's
/// threads write blocks out of order), the gap holds at most `MAX_REFETCH` bytes of ranges planned
/// before (fetched already, by their own run: extract plans its large files first, then the
/// small ones around them; a block or two written out of order is let through) and the run
/// stays within `MAX_RUN`; else it starts a new run. Empty ranges,
/// ranges past `object_len` and ranges planned before are left out (the first occurrence is
/// the one fetched). (Refusing gaps that hold ranges planned later instead split the plan of
/// a Debian system's extract into 1619 runs instead of 236; fetching those ranges again with
/// their own run cost 1.23x the bytes, issue #22.)
#[cfg(test)]
pub fn build_runs(ranges: &[(u64, u64)], object_len: u64) -> Vec<Run> {
    build_cut_runs(ranges, &[object_len])
}

/// `build_runs` of an object made of parts that end at `ends` (ascending; the last is the
/// object's length, `http::parts`): a run never crosses the end of a part, since one request
/// reads one part. A range that crosses one is a run alone (its fetch is split there).
pub fn build_cut_runs(ranges: &[(u64, u64)], ends: &[u64]) -> Vec<Run> {
    let object_len = ends.last().copied().unwrap_or(0);
    // Whether `from..to` lies within one part.
    let within = |from: u64, to: u64| {
        let i = ends.partition_point(|&e| e <= from);
        ends.get(i).is_some_and(|&e| to <= e)
    };
    let mut seen = HashSet::new();
    // The ranges planned so far: start → length.
    let mut starts = std::collections::BTreeMap::new();
    // The runs by their first byte (and index): where a range planned later may lie already.
    let mut by_start = std::collections::BTreeSet::new();
    let mut runs: Vec<Run> = Vec::new();
    for &(at, len) in ranges {
        let Some(end) = at.checked_add(len) else {
            continue;
        };
        if len == 0 || end > object_len || !seen.insert((at, len)) {
            continue;
        }
        // A run reaches at most MAX_RUN bytes back, unless it is a single longer range.
        let holder = by_start
            .range((at.saturating_sub(MAX_RUN), 0)..=(at, usize::MAX))
            .rev()
            .map(|&(_, i)| i)
            .find(|&i| {
                let r: &Run = &runs[i];
                r.at <= at && end <= r.at + r.len
            });
        if let Some(i) = holder {
            let now = runs.len() - 1;
            starts.insert(at, len);
            runs[i].pieces.push((at, len));
            runs[i].planned_at.push(now);
            continue;
        }
        // Bytes of ranges planned before that lie in `from..to` (fetched by their own run).
        let planned_in = |from: u64, to: u64| -> u64 {
            if from >= to {
                return 0;
            }
            starts.range(from..to).map(|(_, l)| *l).sum()
        };
        // A run grows to take the range, ahead of it or behind it (a block written before
        // the one planned first: capture's threads finish out of order), when the gap between
        // them is small and holds few bytes planned before, and the run stays within MAX_RUN
        // and one part. The last run is tried first, then the runs just before and just
        // after the range (the plan jumps between files far apart and back).
        let joins = |r: &Run| {
            let r_end = r.at + r.len;
            let (from, to) = (r.at.min(at), r_end.max(end));
            let (gap_from, gap_to) = if at >= r.at { (r_end, at) } else { (end, r.at) };
            gap_to.saturating_sub(gap_from) <= MAX_GAP
                && to - from <= MAX_RUN
                && planned_in(gap_from, gap_to) <= MAX_REFETCH
                && within(from, to)
        };
        let last = runs.len().checked_sub(1);
        let before = by_start.range(..=(at, usize::MAX)).next_back();
        let after = by_start.range((at, usize::MAX)..).next();
        let grown = [last, before.map(|&(_, i)| i), after.map(|&(_, i)| i)]
            .into_iter()
            .flatten()
            .find(|&i| joins(&runs[i]));
        starts.insert(at, len);
        let now = runs.len();
        match grown {
            Some(i) => {
                let r = &mut runs[i];
                if at < r.at {
                    by_start.remove(&(r.at, i));
                    by_start.insert((at, i));
                    r.len += r.at - at;
                    r.at = at;
                }
                r.len = (r.at + r.len).max(end) - r.at;
                r.pieces.push((at, len));
                r.planned_at.push(now - 1);
            }
            None => {
                by_start.insert((at, now));
                runs.push(Run {
                    at,
                    len,
                    pieces: vec![(at, len)],
                    planned_at: vec![now],
                });
            }
        }
    }
    runs
}

/// Where a run stands.
#[derive(Debug, Clone)]
enum State {
    Waiting,
    Fetching,
    Done,
    /// The fetch failed: each piece's first read gets this error.
    Failed(std::io::ErrorKind, String),
}

/// A planned range, until it is read.
struct Piece {
    /// The run whose bytes hold it.
    run: usize,
    /// Where it came in the plan, in runs (`Run::planned_at`).
    planned_at: usize,
    bytes: Option<Arc<Vec<u8>>>,
}

/// What a consumer's read of a range finds.
pub enum Lookup {
    /// The range is not (or no longer) in the plan: read it as before.
    NotPlanned,
    Ready(Arc<Vec<u8>>),
    Failed(std::io::Error),
    /// Its run is being fetched: wait for the condition variable and look again.
    Wait,
    /// Its run was waiting: the consumer fetches it itself (`Claim`).
    Fetch(Claim),
}

/// A run taken to fetch: give it back with `Ahead::complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub generation: u64,
    pub run: usize,
    pub at: u64,
    pub len: u64,
}

/// The plan of one object and the pieces fetched for it.
pub struct Ahead {
    generation: u64,
    runs: Vec<Run>,
    states: Vec<State>,
    pieces: HashMap<(u64, u64), Piece>,
    /// Runs before this one are taken (fetchers look from here).
    next: usize,
    /// Bytes of pieces fetched and not read, plus the length of the runs in flight.
    held: u64,
    /// The furthest point of the plan (in runs, `Run::planned_at`) a consumer read from.
    frontier: usize,
    budget: u64,
    /// The object is gone: fetchers end.
    pub closed: bool,
}

impl Ahead {
    pub fn new(budget: u64) -> Self {
        Ahead {
            generation: 0,
            runs: Vec::new(),
            states: Vec::new(),
            pieces: HashMap::new(),
            next: 0,
            held: 0,
            frontier: 0,
            budget,
            closed: false,
        }
    }

    /// Replaces the plan (what the old one fetched and nobody read is dropped).
    pub fn replace(&mut self, runs: Vec<Run>) {
        self.generation += 1;
        self.pieces.clear();
        for (i, r) in runs.iter().enumerate() {
            for (&p, &planned_at) in r.pieces.iter().zip(&r.planned_at) {
                self.pieces.insert(
                    p,
                    Piece {
                        run: i,
                        planned_at,
                        bytes: None,
                    },
                );
            }
        }
        self.states = vec![State::Waiting; runs.len()];
        self.runs = runs;
        self.next = 0;
        self.held = 0;
        self.frontier = 0;
    }

    /// Bytes fetched ahead and not yet read, with the runs in flight.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Whether runs are left for fetchers to take.
    #[cfg(test)]
    pub fn has_waiting(&self) -> bool {
        self.states[self.next.min(self.states.len())..]
            .iter()
            .any(|s| matches!(s, State::Waiting))
    }

    fn claim(&mut self, run: usize) -> Claim {
        self.states[run] = State::Fetching;
        self.held += self.runs[run].len;
        Claim {
            generation: self.generation,
            run,
            at: self.runs[run].at,
            len: self.runs[run].len,
        }
    }

    /// For a fetcher: the next waiting run, unless the budget is reached (then `None`: wait).
    pub fn take_next(&mut self) -> Option<Claim> {
        while self
            .states
            .get(self.next)
            .is_some_and(|s| !matches!(s, State::Waiting))
        {
            self.next += 1;
        }
        let run = self.next;
        let len = self.runs.get(run)?.len;
        if self.held > 0 && self.held.saturating_add(len) > self.budget {
            return None;
        }
        self.next += 1;
        Some(self.claim(run))
    }

    /// For a consumer: what the read of `len` bytes at `at` finds. A piece returned ready or
    /// failed leaves the plan.
    pub fn lookup(&mut self, at: u64, len: u64) -> Lookup {
        let Some(p) = self.pieces.get(&(at, len)) else {
            return Lookup::NotPlanned;
        };
        let (run, planned_at) = (p.run, p.planned_at);
        match &self.states[run] {
            State::Waiting => Lookup::Fetch(self.claim(run)),
            State::Fetching => Lookup::Wait,
            State::Failed(kind, msg) => {
                let e = std::io::Error::new(*kind, msg.clone());
                self.pieces.remove(&(at, len));
                Lookup::Failed(e)
            }
            State::Done => {
                let bytes = self.pieces.remove(&(at, len)).and_then(|p| p.bytes);
                let Some(bytes) = bytes else {
                    return Lookup::NotPlanned;
                };
                self.held = self.held.saturating_sub(len);
                if planned_at > self.frontier {
                    self.frontier = planned_at;
                    self.drop_stale();
                }
                Lookup::Ready(bytes)
            }
        }
    }

    /// Drops the fetched, unread pieces planned far behind the frontier: the consumer went
    /// on without them. (A piece planned late that lies in an early run is judged by where
    /// it was planned, not by its run.)
    fn drop_stale(&mut self) {
        let Some(limit) = self.frontier.checked_sub(STALE_RUNS) else {
            return;
        };
        let mut freed = 0;
        self.pieces.retain(|_, p| {
            let stale = p.planned_at < limit && p.bytes.is_some();
            if stale {
                freed += p.bytes.as_ref().map_or(0, |b| b.len() as u64);
            }
            !stale
        });
        self.held = self.held.saturating_sub(freed);
    }

    /// The fetch of `c` ended with the run's bytes or an error. Its pieces become ready (or
    /// failed). A claim of an older plan changes nothing.
    pub fn complete(&mut self, c: Claim, got: std::io::Result<Vec<u8>>) {
        if c.generation != self.generation || c.run >= self.runs.len() {
            return;
        }
        self.held = self.held.saturating_sub(c.len);
        let bytes = match got {
            Ok(b) if b.len() as u64 == c.len => b,
            Ok(b) => {
                let msg = format!("internal: a run of {} bytes came with {}", c.len, b.len());
                self.states[c.run] = State::Failed(std::io::ErrorKind::Other, msg);
                return;
            }
            Err(e) => {
                self.states[c.run] = State::Failed(e.kind(), e.to_string());
                return;
            }
        };
        for &(at, len) in &self.runs[c.run].pieces {
            let Some(p) = self.pieces.get_mut(&(at, len)) else {
                continue; // forgotten meanwhile
            };
            let from = (at - c.at) as usize;
            p.bytes = Some(Arc::new(bytes[from..from + len as usize].to_vec()));
            self.held += len;
        }
        self.states[c.run] = State::Done;
    }

    /// Takes every piece holding a byte of `len` bytes at `at` out of the plan (bytes that
    /// failed their hash: the next read goes to the server).
    pub fn forget(&mut self, at: u64, len: u64) {
        let end = at.saturating_add(len);
        let mut freed = 0;
        self.pieces.retain(|&(a, l), p| {
            let keep = len == 0 || a.saturating_add(l) <= at || a >= end;
            if !keep {
                freed += p.bytes.as_ref().map_or(0, |b| b.len() as u64);
            }
            keep
        });
        self.held = self.held.saturating_sub(freed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn spans(runs: &[Run]) -> Vec<(u64, u64)> {
        runs.iter().map(|r| (r.at, r.len)).collect()
    }

    #[test]
    fn close_ranges_share_a_run_and_far_ones_do_not() {
        let ranges = [
            (0, 1000),
            (1000, 500),
            // a gap of exactly 1 MiB still joins
            (1500 + MIB, 100),
            // one byte more than 1 MiB does not
            (1600 + 2 * MIB + 1, 10),
        ];
        let runs = build_runs(&ranges, 1 << 30);
        assert_eq!(spans(&runs), [(0, 1600 + MIB), (1600 + 2 * MIB + 1, 10)]);
        assert_eq!(runs[0].pieces, ranges[..3]);
        assert_eq!(runs[1].pieces, ranges[3..]);
    }

    #[test]
    fn a_run_stops_at_16_mib() {
        // 200 KiB blocks back to back: 81 fit in 16 MiB (81 × 200 KiB = 16200 KiB)
        let block = 200 << 10;
        let ranges: Vec<_> = (0..200).map(|i| (i * block, block)).collect();
        let runs = build_runs(&ranges, 1 << 30);
        assert!(runs.iter().all(|r| r.len <= MAX_RUN));
        assert_eq!(runs[0].pieces.len(), (MAX_RUN / block) as usize);
        assert_eq!(runs.len(), 200usize.div_ceil((MAX_RUN / block) as usize));
        let pieces: Vec<_> = runs.iter().flat_map(|r| r.pieces.clone()).collect();
        assert_eq!(pieces, ranges, "every range in one run, in order");
        // a range larger than the cap is a run alone
        let big = build_runs(&[(0, 10), (10, 20 * MIB), (20 * MIB + 10, 5)], 1 << 30);
        assert_eq!(spans(&big), [(0, 10), (10, 20 * MIB), (20 * MIB + 10, 5)]);
    }

    #[test]
    fn unsorted_and_duplicate_ranges() {
        let ranges = [
            (5 * MIB, 100),
            (5 * MIB + 50, 10), // inside the run already
            (3 * MIB, 100),     // 2 MiB behind: a new run
            (5 * MIB, 100),     // planned before: left out
            (3 * MIB + 200, 100),
            (3 * MIB - 1000, 100), // just behind: the run grows back to take it
            (0, 0),                // empty
        ];
        let runs = build_runs(&ranges, 1 << 30);
        assert_eq!(spans(&runs), [(5 * MIB, 100), (3 * MIB - 1000, 1300)]);
        assert_eq!(runs[0].pieces, [(5 * MIB, 100), (5 * MIB + 50, 10)]);
        assert_eq!(
            runs[1].pieces,
            [(3 * MIB, 100), (3 * MIB + 200, 100), (3 * MIB - 1000, 100)]
        );
    }

    #[test]
    fn small_blocks_around_a_large_one_grow_its_run() {
        // a large file's block first (over 512 KiB at 10 MiB), another file far away, then small
        // files' blocks around the large one, ahead of it and behind it: the large block's run
        // grows to take them (it is their neighbour, though not the last run), no byte twice
        let k512 = MAX_REFETCH + 1;
        let ranges = [
            (10 * MIB, k512),
            (20 * MIB, 100),
            (10 * MIB + k512 + 100, 100),
            (10 * MIB - 300, 100),
            (10 * MIB - 150, 100),
            (10 * MIB + k512 + 300, 100),
        ];
        let runs = build_runs(&ranges, 1 << 30);
        assert_eq!(
            spans(&runs),
            [(10 * MIB - 300, k512 + 700), (20 * MIB, 100)]
        );
        assert_eq!(
            runs[0].pieces,
            [ranges[0], ranges[2], ranges[3], ranges[4], ranges[5]]
        );
        assert_eq!(
            runs[0].planned_at,
            [0, 1, 1, 1, 1],
            "planned while run 1 was last"
        );
        // a block written out of order (capture's threads finish in any order): the run
        // grows back to take it, no byte fetched twice
        let k200 = 200 << 10;
        let swapped = [(k200, k200), (0, k200), (2 * k200, k200)];
        assert_eq!(spans(&build_runs(&swapped, 1 << 30)), [(0, 3 * k200)]);
        // a plan that jumps between two places and back: one run for each place
        let jumps = [(0, 100), (5 * MIB, 100), (200, 100), (5 * MIB - 300, 100)];
        assert_eq!(
            spans(&build_runs(&jumps, 1 << 30)),
            [(0, 300), (5 * MIB - 300, 400)]
        );
    }

    #[test]
    fn a_range_planned_later_inside_a_run_is_read_from_that_run() {
        // extract's order: a large file's blocks, then small files whose blocks lie in the
        // gaps that run fetched anyway (issue #22: they were fetched a second time)
        let ranges = [
            (0, 100),
            (300, 100),      // joins: the run fetches 100..300 too
            (10 * MIB, 100), // far: a run of its own
            (150, 50),       // in run 0's gap: one of its pieces
            (10 * MIB + 50, 10),
        ];
        let runs = build_runs(&ranges, 1 << 30);
        assert_eq!(spans(&runs), [(0, 400), (10 * MIB, 100)]);
        assert_eq!(runs[0].pieces, [(0, 100), (300, 100), (150, 50)]);
        assert_eq!(
            runs[0].planned_at,
            [0, 0, 1],
            "planned while run 1 was built"
        );
        assert_eq!(runs[1].pieces, [(10 * MIB, 100), (10 * MIB + 50, 10)]);
        let fetched: u64 = runs.iter().map(|r| r.len).sum();
        assert_eq!(fetched, 500, "no byte twice");
        // the late piece waits in run 0's bytes until it is read
        let mut a = Ahead::new(DEFAULT_BUDGET);
        a.replace(runs);
        for c in claim_all(&mut a) {
            a.complete(c, Ok((0..c.len).map(|i| i as u8).collect()));
        }
        for (at, len) in [(0, 100), (300, 100), (10 * MIB, 100), (10 * MIB + 50, 10)] {
            assert!(matches!(a.lookup(at, len), Lookup::Ready(_)));
        }
        let Lookup::Ready(b) = a.lookup(150, 50) else {
            panic!("the late piece is kept");
        };
        assert_eq!(b[0], 150);
        assert_eq!(a.held(), 0);
    }

    #[test]
    fn pieces_are_stale_by_where_they_were_planned() {
        // run 0 holds a piece planned at the plan's end; runs 1..=70 one piece each
        let mut ranges = vec![(0, 100), (300, 100)];
        ranges.extend((1..=70).map(|i| (i * 10 * MIB, 100)));
        ranges.push((150, 50));
        let runs = build_runs(&ranges, 1 << 30);
        assert_eq!(runs.len(), 71);
        let mut a = Ahead::new(DEFAULT_BUDGET);
        a.replace(runs);
        for c in claim_all(&mut a) {
            a.complete(c, Ok(vec![0; c.len as usize]));
        }
        // reading past run 64 drops run 0's own unread piece (planned at 0), not the late one
        for i in 1..=70 {
            assert!(matches!(a.lookup(i * 10 * MIB, 100), Lookup::Ready(_)));
        }
        assert!(matches!(a.lookup(0, 100), Lookup::NotPlanned), "stale");
        assert!(
            matches!(a.lookup(150, 50), Lookup::Ready(_)),
            "planned at run 70"
        );
    }

    #[test]
    fn the_object_end_bounds_the_plan() {
        let len = 10 * MIB + 7;
        let ranges = [
            (10 * MIB, 7),     // the last block, to the last byte
            (10 * MIB, 8),     // one byte past the end
            (u64::MAX - 1, 4), // overflows
        ];
        let runs = build_runs(&ranges, len);
        assert_eq!(spans(&runs), [(10 * MIB, 7)]);
    }

    #[test]
    fn runs_stop_where_parts_end() {
        // three parts: 0..10 MiB, 10..10 MiB + 100, then to 30 MiB
        let ends = [10 * MIB, 10 * MIB + 100, 30 * MIB];
        let ranges = [
            (8 * MIB, MIB),
            (9 * MIB, MIB),            // ends where the part does: joins
            (10 * MIB, 50),            // the next part, adjacent: a run of its own
            (10 * MIB + 60, 40),       // same part: joins
            (10 * MIB + 100, 100),     // the third part
            (20 * MIB - 10, 20),       // far: a new run
            (20 * MIB + 100, 100),     // joins
            (29 * MIB + 5, MIB - 5),   // to the object's last byte
            (30 * MIB - 10, 10),       // inside the run before
            (9 * MIB + 10, MIB + 100), // crosses two ends: alone
            (10 * MIB + 180, 10),      // inside the third part's run: read from it
        ];
        let runs = build_cut_runs(&ranges, &ends);
        assert_eq!(
            spans(&runs),
            [
                (8 * MIB, 2 * MIB),
                (10 * MIB, 100),
                (10 * MIB + 100, 100),
                (20 * MIB - 10, 210),
                (29 * MIB + 5, MIB - 5),
                (9 * MIB + 10, MIB + 100),
            ]
        );
        assert_eq!(
            runs[2].pieces,
            [(10 * MIB + 100, 100), (10 * MIB + 180, 10)]
        );
        for r in &runs[..5] {
            let i = ends.partition_point(|&e| e <= r.at);
            assert!(r.at + r.len <= ends[i], "{r:?} crosses {}", ends[i]);
        }
        // one part: exactly the single object's runs
        let one: Vec<_> = (0..300)
            .map(|i| (i * 123_457 % (40 * MIB), 70_000))
            .collect();
        assert_eq!(
            build_cut_runs(&one, &[40 * MIB]),
            build_runs(&one, 40 * MIB)
        );
    }

    fn claim_all(a: &mut Ahead) -> Vec<Claim> {
        std::iter::from_fn(|| a.take_next()).collect()
    }

    #[test]
    fn fetchers_stop_at_the_budget_and_go_on_as_pieces_are_read() {
        // runs of 3 MiB 10 MiB apart, each two pieces of 1 MiB with a gap of 1 MiB
        let ranges: Vec<_> = (0..6)
            .flat_map(|i| [(i * 10 * MIB, MIB), (i * 10 * MIB + 2 * MIB, MIB)])
            .collect();
        let mut a = Ahead::new(7 * MIB);
        a.replace(build_runs(&ranges, 1 << 30));
        let first = claim_all(&mut a);
        assert_eq!(first.len(), 2, "a third run in flight would pass 7 MiB");
        assert_eq!(a.held(), 6 * MIB);
        a.complete(first[0], Ok(vec![1; first[0].len as usize]));
        assert_eq!(a.held(), 5 * MIB, "pieces held, not the gap");
        assert!(a.take_next().is_none());
        let Lookup::Ready(b) = a.lookup(0, MIB) else {
            panic!("fetched");
        };
        assert_eq!(b.len() as u64, MIB);
        assert!(matches!(a.lookup(0, MIB), Lookup::NotPlanned), "read once");
        assert_eq!(a.held(), 4 * MIB);
        let next = a.take_next().expect("room again");
        assert_eq!((next.run, next.at), (2, 20 * MIB));
        // a consumer needing a run nobody took fetches it itself, budget or not
        match a.lookup(40 * MIB, MIB) {
            Lookup::Fetch(c) => assert_eq!((c.run, c.at, c.len), (4, 40 * MIB, 3 * MIB)),
            _ => panic!("the consumer fetches a waiting run"),
        }
        assert!(matches!(a.lookup(42 * MIB, MIB), Lookup::Wait));
        assert!(matches!(a.lookup(10 * MIB, MIB), Lookup::Wait));
        // fetchers skip the run the consumer took
        a.complete(first[1], Ok(vec![2; 3 * MIB as usize]));
        for at in [10 * MIB, 12 * MIB, 2 * MIB] {
            assert!(matches!(a.lookup(at, MIB), Lookup::Ready(_)));
        }
        assert_eq!(a.held(), 6 * MIB, "runs 2 and 4 in flight");
        assert!(a.take_next().is_none());
        a.complete(next, Ok(vec![3; 3 * MIB as usize]));
        for at in [20 * MIB, 22 * MIB] {
            assert!(matches!(a.lookup(at, MIB), Lookup::Ready(_)));
        }
        assert_eq!(a.take_next().map(|c| c.run), Some(3), "run 4 is skipped");
        assert!(a.take_next().is_none() && a.has_waiting(), "run 5 waits");
    }

    #[test]
    fn a_failed_run_is_the_error_of_each_read_that_needs_it() {
        let mut a = Ahead::new(DEFAULT_BUDGET);
        a.replace(build_runs(&[(0, 100), (100, 100), (10 * MIB, 5)], 1 << 30));
        let c = a.take_next().expect("run 0");
        a.complete(
            c,
            Err(std::io::Error::other("the server answered HTTP 503")),
        );
        for at in [0, 100] {
            match a.lookup(at, 100) {
                Lookup::Failed(e) => assert!(e.to_string().contains("HTTP 503"), "{e}"),
                _ => panic!("the run's error"),
            }
        }
        assert!(
            matches!(a.lookup(0, 100), Lookup::NotPlanned),
            "a second read tries the server again"
        );
        assert_eq!(a.held(), 0);
        // a claim of a replaced plan changes nothing
        let old = a.take_next().expect("run 1");
        a.replace(build_runs(&[(10 * MIB, 5)], 1 << 30));
        a.complete(old, Ok(vec![0; 5]));
        assert!(matches!(a.lookup(10 * MIB, 5), Lookup::Fetch(_)));
    }

    #[test]
    fn forget_takes_pieces_out_of_the_plan() {
        let mut a = Ahead::new(DEFAULT_BUDGET);
        a.replace(build_runs(&[(0, 100), (100, 100)], 1 << 30));
        let c = a.take_next().expect("run");
        a.complete(c, Ok((0..200).map(|i| i as u8).collect()));
        a.forget(150, 1);
        assert!(matches!(a.lookup(100, 100), Lookup::NotPlanned));
        let Lookup::Ready(b) = a.lookup(0, 100) else {
            panic!("untouched piece");
        };
        assert_eq!(b[99], 99);
        assert_eq!(a.held(), 0);
    }
}
