//! Where a restore's fresh identities come from (issue #24 item 4): `--new-uuids` and
//! `--default-layout` draw GUIDs, UUIDs, volume ids and signatures. From the kernel's random
//! source by default; with `--seed N` (`osimage.seed=N`) every value is a function of N and of
//! a stable label naming what is drawn, so `restore --dry-run --seed N` prints exactly the
//! values `restore --seed N` writes (docs/RESTORE.md "Seeds").
//!
//! The derivation, for the `n`-th draw (from 0) under label `L`:
//!
//! ```text
//! key   = BLAKE3-derive_key("osimage restore seed v1", N as 8 bytes little-endian)
//! bytes = first 16 bytes of BLAKE3-keyed_hash(key, L ‖ 0x00 ‖ n as 4 bytes little-endian)
//! ```
//!
//! then shaped as the tool takes it (a version 4 UUID sets its version and variant bits,
//! RFC 9562 §5.4). Labels name the recorded disk and the recorded value being replaced
//! (`vda: filesystem UUID 0b2c…`), so a value does not change when another one is added.

use std::collections::HashMap;

use super::PlanError;

/// The BLAKE3 `derive_key` context of seeded draws; changing it changes every seeded value.
pub const SEED_CONTEXT: &str = "osimage restore seed v1";

/// How fresh identities are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdSource {
    /// The kernel's random bytes (`getrandom`): different on every run.
    Kernel,
    /// Derived from `--seed N`: the same on every run with the same N.
    Seed(u64),
}

impl IdSource {
    /// `Seed(n)` for `Some(n)`, else `Kernel`.
    pub fn from_seed(seed: Option<u64>) -> IdSource {
        seed.map_or(IdSource::Kernel, IdSource::Seed)
    }
}

/// One restore's draws: 16 bytes per labelled value.
#[derive(Debug)]
pub struct Draws {
    source: IdSource,
    key: [u8; 32],
    /// How often each label was drawn, so a repeated label gets a different value.
    counts: HashMap<String, u32>,
}

impl Draws {
    pub fn new(source: IdSource) -> Draws {
        let key = match source {
            IdSource::Seed(n) => blake3::derive_key(SEED_CONTEXT, &n.to_le_bytes()),
            IdSource::Kernel => [0; 32],
        };
        Draws {
            source,
            key,
            counts: HashMap::new(),
        }
    }

    /// 16 bytes for the value `label` names.
    pub fn next(&mut self, label: &str) -> Result<[u8; 16], PlanError> {
        let mut out = [0u8; 16];
        match self.source {
            IdSource::Kernel => crate::restore::default_layout::fill_random(&mut out)?,
            IdSource::Seed(_) => {
                let count = self.counts.entry(label.to_string()).or_insert(0);
                let n = *count;
                *count += 1;
                let mut h = blake3::Hasher::new_keyed(&self.key);
                h.update(label.as_bytes());
                h.update(&[0]);
                h.update(&n.to_le_bytes());
                out.copy_from_slice(&h.finalize().as_bytes()[..16]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_values_and_labels_separate_them() {
        let mut a = Draws::new(IdSource::Seed(7));
        let mut b = Draws::new(IdSource::Seed(7));
        let x = a.next("vda: disk GUID").unwrap();
        assert_eq!(x, b.next("vda: disk GUID").unwrap());
        // A repeated label draws anew; another label or seed gives another value.
        assert_ne!(x, a.next("vda: disk GUID").unwrap());
        assert_ne!(x, a.next("vdb: disk GUID").unwrap());
        let mut c = Draws::new(IdSource::Seed(8));
        assert_ne!(x, c.next("vda: disk GUID").unwrap());
    }

    #[test]
    fn the_derivation_is_the_documented_one() {
        let key = blake3::derive_key(SEED_CONTEXT, &7u64.to_le_bytes());
        let mut input = b"vda: disk GUID\0".to_vec();
        input.extend_from_slice(&0u32.to_le_bytes());
        let want = blake3::keyed_hash(&key, &input);
        let got = Draws::new(IdSource::Seed(7))
            .next("vda: disk GUID")
            .unwrap();
        assert_eq!(got, want.as_bytes()[..16]);
    }

    #[test]
    fn the_kernel_source_differs_every_time() {
        let mut k = Draws::new(IdSource::Kernel);
        assert_ne!(k.next("x").unwrap(), k.next("x").unwrap());
    }
}
