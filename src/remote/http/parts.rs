//! The objects an `HttpObject` reads, end to end. Most are one object whose length the
//! first answer says; a store version's packs (docs/STORE.md §2.3) are many, read as their
//! concatenation so that they share one plan, one budget, one fetcher pool, one read cache
//! and one set of counters (§7.2.1: a plan per pack would start 4 fetchers and a 128 MiB
//! budget per pack, hundreds of each for a large image). Part i holds the bytes
//! `[start_i, start_i + len_i)` of the whole; a request never crosses from one part into the
//! next, and its range and the answer's `Content-Range` are the part's own.

/// Makes a freshly signed URL for each request (an S3 object, `super::s3`).
pub(crate) type Signer = Box<dyn Fn() -> String + Send + Sync>;

/// Where requests go: one URL, or one signed anew for every request.
pub(crate) enum Target {
    /// The URL as given, query and all: sent, never shown.
    Fixed(String),
    Signed(Signer),
}

impl Target {
    pub(super) fn url(&self) -> String {
        match self {
            Target::Fixed(u) => u.clone(),
            Target::Signed(sign) => sign(),
        }
    }
}

/// One object of an `HttpObject` made of several, with its length known in advance (a
/// pack's, from the manifest).
pub(crate) struct Part {
    pub(crate) len: u64,
    pub(crate) target: Target,
    /// How messages name it: `s3://bucket/prefix/packs/ab/ab12…`, a URL without its query.
    pub(crate) shown: String,
}

/// The parts of one `HttpObject`, in order.
pub(super) struct Parts {
    parts: Vec<Part>,
    /// Where each part ends in the whole, ascending; the last is the whole's length.
    ends: Vec<u64>,
    /// Opened as parts: errors name the part. An object opened alone is named by whoever
    /// reads it (`RangeRead::describe`), as before there were parts.
    named: bool,
}

/// The share of one read that lies in one part.
pub(super) struct Slice<'a> {
    pub(super) part: &'a Part,
    /// Where it starts in the part.
    pub(super) at: u64,
    /// Where it starts in the read's buffer, and its length.
    pub(super) from: usize,
    pub(super) len: usize,
}

impl Parts {
    /// An object read alone; its length is set by `set_len` once the first answer says it.
    pub(super) fn one(target: Target, shown: String) -> Parts {
        Parts {
            parts: vec![Part {
                len: 0,
                target,
                shown,
            }],
            ends: vec![0],
            named: false,
        }
    }

    /// `parts` end to end; `shown` names the whole in the errors of a bad list.
    pub(super) fn many(parts: Vec<Part>, shown: &str) -> std::io::Result<Parts> {
        if parts.is_empty() {
            return Err(std::io::Error::other(format!(
                "{shown}: an object made of parts needs at least one part"
            )));
        }
        let mut ends = Vec::with_capacity(parts.len());
        let mut end = 0u64;
        for p in &parts {
            end = end.checked_add(p.len).ok_or_else(|| {
                std::io::Error::other(format!(
                    "{shown}: the parts' lengths add up to more than 2^64 bytes (at {})",
                    p.shown
                ))
            })?;
            ends.push(end);
        }
        Ok(Parts {
            parts,
            ends,
            named: true,
        })
    }

    /// The single part's length, from the first answer.
    pub(super) fn set_len(&mut self, len: u64) {
        if let ([p], [e]) = (self.parts.as_mut_slice(), self.ends.as_mut_slice()) {
            p.len = len;
            *e = len;
        }
    }

    pub(super) fn first(&self) -> &Part {
        &self.parts[0]
    }

    /// The whole's length: the sum of the parts'.
    pub(super) fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Where each part ends in the whole (what planned runs must not cross).
    pub(super) fn ends(&self) -> &[u64] {
        &self.ends
    }

    /// Whether errors name the part (`message`).
    pub(super) fn named(&self) -> bool {
        self.named
    }

    /// `msg`, about `part`, as the reader of the whole sees it.
    pub(super) fn message(&self, part: &Part, msg: String) -> String {
        if self.named {
            format!("{}: {msg}", part.shown)
        } else {
            msg
        }
    }

    /// The slices of `len` bytes at `at` of the whole (which the caller has checked lie
    /// inside it), one for each part they touch, in order; empty parts are skipped.
    pub(super) fn split(&self, at: u64, len: usize) -> Vec<Slice<'_>> {
        let mut out = Vec::new();
        let end = at.saturating_add(len as u64);
        // the first part ending after `at`
        let mut i = self.ends.partition_point(|&e| e <= at);
        let mut pos = at;
        while pos < end && i < self.parts.len() {
            let start = self.ends[i] - self.parts[i].len;
            let stop = end.min(self.ends[i]);
            if stop > pos {
                out.push(Slice {
                    part: &self.parts[i],
                    at: pos - start,
                    from: (pos - at) as usize,
                    len: (stop - pos) as usize,
                });
                pos = stop;
            }
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(len: u64, name: &str) -> Part {
        Part {
            len,
            target: Target::Fixed(format!("http://h/{name}?sig=secret")),
            shown: format!("http://h/{name}"),
        }
    }

    fn spans(p: &Parts, at: u64, len: usize) -> Vec<(String, u64, usize, usize)> {
        p.split(at, len)
            .iter()
            .map(|s| (s.part.shown.clone(), s.at, s.from, s.len))
            .collect()
    }

    #[test]
    fn a_read_is_split_where_parts_meet() {
        let p = Parts::many(
            vec![part(100, "a"), part(0, "e"), part(50, "b"), part(10, "c")],
            "w",
        )
        .expect("parts");
        assert_eq!(p.len(), 160);
        assert_eq!(p.ends(), [100, 100, 150, 160]);
        let s = |n: &str| format!("http://h/{n}");
        assert_eq!(spans(&p, 10, 20), [(s("a"), 10, 0, 20)]);
        // across the empty part and into the next
        assert_eq!(
            spans(&p, 90, 20),
            [(s("a"), 90, 0, 10), (s("b"), 0, 10, 10)]
        );
        // from a part's first byte, over three parts, to the last byte
        assert_eq!(
            spans(&p, 100, 60),
            [(s("b"), 0, 0, 50), (s("c"), 0, 50, 10)]
        );
        assert_eq!(spans(&p, 159, 1), [(s("c"), 9, 0, 1)]);
        assert_eq!(p.message(p.first(), "lost".into()), "http://h/a: lost");
    }

    #[test]
    fn a_bad_list_of_parts_is_refused() {
        let e = Parts::many(Vec::new(), "whole").err().expect("no parts");
        assert!(e.to_string().contains("whole: "), "{e}");
        let e = Parts::many(vec![part(u64::MAX, "a"), part(1, "b")], "whole")
            .err()
            .expect("overflow");
        assert!(e.to_string().contains("http://h/b"), "{e}");
    }

    #[test]
    fn an_object_read_alone_takes_its_length_later_and_is_not_named_twice() {
        let mut p = Parts::one(Target::Fixed("http://h/x".into()), "http://h/x".into());
        p.set_len(300);
        assert_eq!((p.len(), p.ends()), (300, &[300u64][..]));
        assert_eq!(p.message(p.first(), "lost".into()), "lost");
        assert!(!p.named());
    }
}
