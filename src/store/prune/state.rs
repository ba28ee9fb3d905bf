//! What earlier prunes left in a store (docs/STORE.md §2.7, §5.2): the condemnations under
//! `prune/` with their wait lists and sweep records, and the pins under `pins/`. A prune reads
//! them to sweep; a capture to leave condemned packs and blobs out of its dedup (§4 step 3);
//! a reader to refuse a forgotten version (§5.2); `store ls` to mark it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::format::manifest::Timestamp;
use crate::remote::s3::S3Error;
use crate::store::names::{self, PINS, PRUNE, PruneObject};
use crate::store::objects::frame::{HEADER_LEN, Kind};
use crate::store::objects::{
    Condemnation, Pin, Swept, Wait, decode_condemnation, decode_pin, decode_wait,
    encode_condemnation, encode_pin, encode_swept, encode_wait,
};
use crate::store::{ObjectError, Store, StoreError};

/// One condemnation as the listing of `prune/` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedCondemnation {
    pub id: [u8; 16],
    /// The server's time of `prune/<id>`'s PUT; `None` for a `.wait` or `.swept` left without
    /// its condemnation (a housekeeping that stopped halfway).
    pub made: Option<DateTime<Utc>>,
    pub wait: bool,
    /// The server's time of `prune/<id>.swept`'s PUT, once swept.
    pub swept: Option<DateTime<Utc>>,
}

impl ListedCondemnation {
    /// Made and not yet swept: what captures avoid and readers refuse.
    pub fn unswept(&self) -> bool {
        self.made.is_some() && self.swept.is_none()
    }
}

/// The listing of `prune/`, oldest condemnation first, and the server's clock when it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneListing {
    pub now: DateTime<Utc>,
    pub condemnations: Vec<ListedCondemnation>,
}

/// The unswept condemnations, read: what they hold.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    pub condemnations: Vec<(ListedCondemnation, Condemnation)>,
}

impl Pending {
    /// Every condemned version key (`images/NAME/VERSION`) and when its condemnation was made.
    pub fn versions(&self) -> HashMap<&str, DateTime<Utc>> {
        let mut out = HashMap::new();
        for (l, c) in &self.condemnations {
            for v in &c.versions {
                out.entry(v.as_str())
                    .or_insert(l.made.unwrap_or(DateTime::UNIX_EPOCH));
            }
        }
        out
    }

    /// Every condemned pack.
    pub fn packs(&self) -> HashSet<[u8; 32]> {
        self.condemnations
            .iter()
            .flat_map(|(_, c)| c.packs.iter().copied())
            .collect()
    }

    /// Every condemned rescue blob key.
    pub fn blobs(&self) -> HashSet<String> {
        self.condemnations
            .iter()
            .flat_map(|(_, c)| c.blobs.iter().cloned())
            .collect()
    }
}

/// One pin as listed and read (a damaged one keeps its reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPin {
    pub id: [u8; 16],
    pub pin: Result<Pin, String>,
    /// The folder of its series under `images/`: the name, or in an encrypted store its
    /// keyed name (STORE.md §6); `None` for a damaged pin.
    pub dir: Option<String>,
}

/// The pins of a store and the server's clock when it listed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pins {
    pub now: DateTime<Utc>,
    pub pins: Vec<ListedPin>,
}

impl Pins {
    /// Whether a pin with `until` still ahead of the server's clock names the version
    /// `version` in the series folder `dir` (a plain store's series name, an encrypted
    /// store's keyed name: what version keys hold).
    pub fn keeps(&self, dir: &str, version: &str) -> bool {
        self.pins.iter().any(|l| {
            l.pin.as_ref().is_ok_and(|p| {
                l.dir.as_deref() == Some(dir) && p.version == version && to_utc(p.until) > self.now
            })
        })
    }

    /// The pins whose time has passed.
    pub fn expired(&self) -> Vec<[u8; 16]> {
        self.pins
            .iter()
            .filter(|p| p.pin.as_ref().is_ok_and(|p| to_utc(p.until) <= self.now))
            .map(|p| p.id)
            .collect()
    }
}

/// A stored time as chrono's.
pub fn to_utc(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.sec, t.nsec).unwrap_or(DateTime::UNIX_EPOCH)
}

impl Store {
    /// LIST `prune/`: every condemnation with the state its wait list and sweep record give
    /// it. A key there that is not a prune object's is an error naming it.
    pub fn list_condemnations(&self) -> Result<PruneListing, StoreError> {
        let listing = self.client.list(&self.root.key(PRUNE))?;
        let now = listing
            .server_date
            .ok_or_else(|| no_date(&self.root.to_string(), PRUNE))?;
        let mut by_id: BTreeMap<[u8; 16], ListedCondemnation> = BTreeMap::new();
        for o in listing.objects {
            let rel = self.root.listed_relative(&o.key)?;
            let (id, what) =
                names::parse_prune_key(rel).map_err(|e| ObjectError::new(&self.shown(rel), e))?;
            let e = by_id.entry(id).or_insert(ListedCondemnation {
                id,
                made: None,
                wait: false,
                swept: None,
            });
            match what {
                PruneObject::Condemnation => e.made = Some(o.last_modified),
                PruneObject::Wait => e.wait = true,
                PruneObject::Swept => e.swept = Some(o.last_modified),
            }
        }
        let mut condemnations: Vec<ListedCondemnation> = by_id.into_values().collect();
        condemnations.sort_by_key(|c| (c.made, c.id));
        Ok(PruneListing { now, condemnations })
    }

    /// The unswept condemnations and what they hold (one GET each). One deleted since the
    /// listing (swept and cleaned up meanwhile) is left out.
    pub fn pending(&self) -> Result<Pending, StoreError> {
        let listing = self.list_condemnations()?;
        let mut out = Pending::default();
        for l in listing.condemnations.into_iter().filter(|c| c.unswept()) {
            if let Some(c) = self.read_condemnation(&l.id)? {
                out.condemnations.push((l, c));
            }
        }
        Ok(out)
    }

    /// The condemnation `id`; `None` when it is gone.
    pub fn read_condemnation(&self, id: &[u8; 16]) -> Result<Option<Condemnation>, StoreError> {
        let rel = names::condemnation_key(id);
        Ok(match self.get_small(&rel, Kind::Condemnation)? {
            Some(b) => Some(decode_condemnation(&self.shown(&rel), &b, self.keys())?),
            None => None,
        })
    }

    /// The wait list of the condemnation `id`; `None` when it is gone.
    pub fn read_wait(&self, id: &[u8; 16]) -> Result<Option<Wait>, StoreError> {
        let rel = names::wait_key(id);
        Ok(match self.get_small(&rel, Kind::CondemnationWait)? {
            Some(b) => Some(decode_wait(&self.shown(&rel), &b, self.keys())?),
            None => None,
        })
    }

    /// PUTs the condemnation `c` under a new random name; returns its id.
    pub fn put_condemnation(&self, c: &Condemnation) -> Result<[u8; 16], StoreError> {
        let id = crate::store::random_bytes::<16>()?;
        let rel = names::condemnation_key(&id);
        let bytes = encode_condemnation(
            &self.shown(&rel),
            c,
            crate::store::random_bytes()?,
            self.keys(),
        )?;
        self.client.put(&self.root.key(&rel), &bytes)?;
        Ok(id)
    }

    /// PUTs the wait list of the condemnation `id`.
    pub fn put_wait(&self, id: &[u8; 16], w: &Wait) -> Result<(), StoreError> {
        let rel = names::wait_key(id);
        let bytes = encode_wait(
            &self.shown(&rel),
            w,
            crate::store::random_bytes()?,
            self.keys(),
        )?;
        Ok(self.client.put(&self.root.key(&rel), &bytes)?)
    }

    /// PUTs the sweep record of the condemnation `id`.
    pub fn put_swept(&self, id: &[u8; 16], s: &Swept) -> Result<(), StoreError> {
        let rel = names::swept_key(id);
        let bytes = encode_swept(
            &self.shown(&rel),
            s,
            crate::store::random_bytes()?,
            self.keys(),
        )?;
        Ok(self.client.put(&self.root.key(&rel), &bytes)?)
    }

    /// Every pin, read (one GET each); one that does not decode is listed with the reason.
    pub fn list_pins(&self) -> Result<Pins, StoreError> {
        let listing = self.client.list(&self.root.key(PINS))?;
        let now = listing
            .server_date
            .ok_or_else(|| no_date(&self.root.to_string(), PINS))?;
        let mut pins = Vec::new();
        for o in listing.objects {
            let rel = self.root.listed_relative(&o.key)?;
            let id =
                names::parse_pin_key(rel).map_err(|e| ObjectError::new(&self.shown(rel), e))?;
            let pin = match self.get_small(rel, Kind::Pin)? {
                Some(b) => decode_pin(&self.shown(rel), &b, self.keys()).map_err(|e| e.problem),
                None => continue,
            };
            let dir = pin.as_ref().ok().map(|p| self.series_dir(&p.series));
            pins.push(ListedPin { id, pin, dir });
        }
        Ok(Pins { now, pins })
    }

    /// PUTs `pin` under a new random name; returns its key relative to the store.
    pub fn put_pin(&self, pin: &Pin) -> Result<String, StoreError> {
        let rel = names::pin_key(&crate::store::random_bytes::<16>()?);
        let bytes = encode_pin(
            &self.shown(&rel),
            pin,
            crate::store::random_bytes()?,
            self.keys(),
        )?;
        self.client.put(&self.root.key(&rel), &bytes)?;
        Ok(rel)
    }

    /// DELETEs `rel` (a missing object is no error).
    pub fn delete_object(&self, rel: &str) -> Result<(), StoreError> {
        Ok(self.client.delete(&self.root.key(rel))?)
    }

    /// A framed object of `kind`, at most its largest size; `None` when missing.
    fn get_small(&self, rel: &str, kind: Kind) -> Result<Option<Vec<u8>>, StoreError> {
        let max = HEADER_LEN as u64 + kind.max_stored();
        Ok(self.client.get(&self.root.key(rel), max)?)
    }
}

fn no_date(root: &str, prefix: &str) -> StoreError {
    S3Error::Request(format!(
        "{root}: the server's listing of {prefix} carries no Date header, so no age can be judged"
    ))
    .into()
}
