//! Forgotten versions as readers see them (docs/STORE.md §5.2): a version an unswept
//! condemnation holds, and no pin keeps, is gone for new readers at once — `s3://…/NAME`
//! resolves to the newest version not forgotten, `NAME@VERSION` of a forgotten one is
//! refused — though its object stays until a sweep deletes it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::state::{Pending, Pins};
use crate::store::{Store, StoreError, names};

/// The versions forgotten but not yet deleted, and when each was condemned.
#[derive(Clone, Debug, Default)]
pub struct Forgotten {
    versions: HashMap<String, DateTime<Utc>>,
}

impl Forgotten {
    /// From what the unswept condemnations hold, less what pins keep.
    pub fn new(pending: &Pending, pins: &Pins) -> Forgotten {
        let versions = pending
            .versions()
            .into_iter()
            .filter(|(key, _)| {
                names::parse_version_key(key).is_ok_and(|(s, v)| !pins.keeps(&s, &v))
            })
            .map(|(k, t)| (k.to_string(), t))
            .collect();
        Forgotten { versions }
    }

    /// When the prune that forgot `version` of the series folder `dir` (the series name in
    /// a plain store, its keyed name in an encrypted one: `Store::series_dir`) condemned
    /// it; `None` when it is not forgotten.
    pub fn when(&self, dir: &str, version: &str) -> Option<DateTime<Utc>> {
        self.versions
            .get(&names::version_key(dir, version))
            .copied()
    }
}

impl Store {
    /// The store's forgotten versions: a LIST of `prune/` and `pins/`, a GET of each unswept
    /// condemnation and of each pin.
    pub fn forgotten(&self) -> Result<Forgotten, StoreError> {
        Ok(Forgotten::new(&self.pending()?, &self.list_pins()?))
    }

    /// The newest version of `series` that is not in `forgotten`.
    pub fn newest_kept(
        &self,
        series: &str,
        forgotten: &Forgotten,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .versions(series)?
            .into_iter()
            .rev()
            .find(|v| forgotten.when(&self.series_dir(series), v).is_none()))
    }

    /// Refuses `series`@`version` when it is in `forgotten`, saying how a pin keeps it.
    pub fn check_not_forgotten(
        &self,
        series: &str,
        version: &str,
        forgotten: &Forgotten,
    ) -> Result<(), StoreError> {
        let Some(when) = forgotten.when(&self.series_dir(series), version) else {
            return Ok(());
        };
        let named = format!("{}/{series}@{version}", self.root);
        Err(StoreError::Refused(format!(
            "{named}: forgotten by the prune of {}; osimage store pin {named} --until DATE \
             keeps it",
            when.format("%Y-%m-%dT%H:%M:%SZ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::Timestamp;
    use crate::store::objects::{Condemnation, Pin};
    use crate::store::prune::state::{ListedCondemnation, ListedPin};

    const V1: &str = "20261205T195045Z-3fa2c81d09be4471";
    const V2: &str = "20261206T195045Z-0000000000000001";

    fn at(sec: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(sec, 0).unwrap()
    }

    fn pin(version: &str, until: i64) -> ListedPin {
        ListedPin {
            id: [until as u8; 16],
            pin: Ok(Pin {
                series: "web01".into(),
                version: version.into(),
                until: Timestamp {
                    sec: until,
                    nsec: 0,
                },
                why: String::new(),
            }),
            dir: Some("web01".into()),
        }
    }

    #[test]
    fn a_condemned_version_is_forgotten_unless_a_live_pin_keeps_it() {
        let pending = Pending {
            condemnations: vec![(
                ListedCondemnation {
                    id: [1; 16],
                    made: Some(at(1_000)),
                    wait: true,
                    swept: None,
                },
                Condemnation {
                    versions: vec![
                        names::version_key("web01", V1),
                        names::version_key("web01", V2),
                    ],
                    ..Condemnation::default()
                },
            )],
        };
        // V1's pin ends after the server's clock (kept); V2's has ended (not kept, expired).
        let pins = Pins {
            now: at(5_000),
            pins: vec![
                pin(V1, 6_000),
                pin(V2, 5_000),
                ListedPin {
                    id: [9; 16],
                    pin: Err("damaged".into()),
                    dir: None,
                },
            ],
        };
        assert!(pins.keeps("web01", V1));
        assert!(!pins.keeps("web01", V2));
        assert!(!pins.keeps("web02", V1));
        assert_eq!(pins.expired(), vec![[5_000i64 as u8; 16]]);
        let f = Forgotten::new(&pending, &pins);
        assert_eq!(f.when("web01", V1), None);
        assert_eq!(f.when("web01", V2), Some(at(1_000)));
        assert_eq!(f.when("web02", V2), None);
    }
}
