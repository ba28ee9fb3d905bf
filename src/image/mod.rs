//! Where an image's bytes live: a single `.oimg` file, or the `/osimage/` folder of an ISO
//! (docs/FORMAT.md §6). Both give the reader the same thing: the manifest frame's bytes and,
//! for each pack, a file and the byte range it occupies there.

pub mod iso;
pub mod iso_packs;
pub mod kernel_copy;
pub mod lease;
mod manifest;
pub mod oimg;
pub mod write_behind;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::envelope::stream::{self, StreamCipher, StreamId};
use crate::envelope::{ImageKey, Unlock};
use crate::format::PayloadError;
use crate::format::manifest::{Manifest, PackRecord};
use crate::format::records::{FrameHeader, PackHeader, RECORD_LEN};
use crate::format::source::{RangeRead, read_up_to};
use crate::format::store_ref::{self, check_pack_owner};
use crate::units::hex;

/// A byte range of an object (an open file, or an image over HTTP: `format::source`); of an
/// encrypted image, a sealed stream (FORMAT.md §11.3) read as its plaintext.
#[derive(Clone)]
pub struct Span {
    src: Arc<dyn RangeRead>,
    /// The same object when it is a local file: what a refresh's kernel copy needs.
    file: Option<Arc<File>>,
    pub offset: u64,
    /// Plaintext length.
    pub len: u64,
    /// The stream's cipher when the bytes on disk are sealed.
    pub sealed: Option<Arc<StreamCipher>>,
    /// The key of the object the span is, when it is one object of its own (a store's pack,
    /// docs/STORE.md §2.2): what a damage message names besides the pack's id.
    object: Option<Arc<str>>,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("sealed", &self.sealed.is_some())
            .field("local", &self.file.is_some())
            .finish()
    }
}

/// The object a container's spans lie in: any `RangeRead`, and the open file when local.
#[derive(Clone)]
pub struct Backing {
    src: Arc<dyn RangeRead>,
    file: Option<Arc<File>>,
}

impl Backing {
    /// A local file.
    pub fn file(file: Arc<File>) -> Self {
        Backing {
            src: file.clone(),
            file: Some(file),
        }
    }

    /// An object that is not a local file (an HTTP object).
    pub fn remote(src: Arc<dyn RangeRead>) -> Self {
        Backing { src, file: None }
    }

    /// The object's bytes.
    pub fn source(&self) -> &Arc<dyn RangeRead> {
        &self.src
    }

    /// A sealed stream of `len` plaintext bytes stored at `offset` (FORMAT.md §11.3).
    pub fn sealed_span(&self, offset: u64, len: u64, cipher: Arc<StreamCipher>) -> Span {
        Span {
            sealed: Some(cipher),
            ..self.span(offset, len)
        }
    }

    /// A plain range of the object.
    pub fn span(&self, offset: u64, len: u64) -> Span {
        Span {
            src: self.src.clone(),
            file: self.file.clone(),
            offset,
            len,
            sealed: None,
            object: None,
        }
    }
}

impl Span {
    /// A plain range of `file`.
    pub fn plain(file: Arc<File>, offset: u64, len: u64) -> Self {
        Backing::file(file).span(offset, len)
    }

    /// The local file the span lies in; `None` when it is read over the network. Only a
    /// refresh's kernel copy (`format::sink::BlockSource`) needs it.
    pub fn file(&self) -> Option<&Arc<File>> {
        self.file.as_ref()
    }

    /// A plain, empty span of the same object at `offset`.
    fn at(&self, offset: u64) -> Span {
        Span {
            src: self.src.clone(),
            file: self.file.clone(),
            offset,
            len: 0,
            sealed: None,
            object: None,
        }
    }

    /// Bytes the span occupies on disk.
    pub fn stored_len(&self) -> u64 {
        match self.sealed {
            Some(_) => stream::sealed_len(self.len),
            None => self.len,
        }
    }

    /// Reads `buf.len()` bytes at `at` within the span; errors when that runs past its end or,
    /// when sealed, when a segment fails authentication.
    pub fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        let end = at.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of a pack",
            ));
        }
        match &self.sealed {
            None => self.src.read_exact_at(buf, self.offset + at),
            Some(c) => stream::read_at(c, self.len, buf, at, &|b, o| {
                self.src.read_exact_at(b, self.offset + o)
            }),
        }
    }
}

impl Span {
    /// The object the span lies in.
    pub fn source(&self) -> &Arc<dyn RangeRead> {
        &self.src
    }

    /// The span named as the object `key` (a store pack's `P/packs/ab/…`).
    pub fn named(self, key: &str) -> Span {
        Span {
            object: Some(key.into()),
            ..self
        }
    }

    /// The key of the object the span is, if [`Span::named`] named it.
    pub fn object(&self) -> Option<&str> {
        self.object.as_deref()
    }

    /// Appends to `out` the object's ranges a read of `len` bytes at `at` within the span
    /// will ask for (`RangeRead::plan`, docs/STORE.md §7.2.1): the same range moved by the
    /// span's offset or, when sealed, each segment holding those bytes, as `stream::read_at`
    /// reads them. A range past the span's end plans nothing (its read fails anyway).
    pub fn plan_read(&self, at: u64, len: u64, out: &mut Vec<(u64, u64)>) {
        if len == 0 || at.checked_add(len).is_none_or(|e| e > self.len) {
            return;
        }
        match self.sealed {
            None => out.push((self.offset + at, len)),
            Some(_) => {
                let seg = stream::SEGMENT + stream::TAG;
                for n in at / stream::SEGMENT..=(at + len - 1) / stream::SEGMENT {
                    let plain = stream::SEGMENT.min(self.len - n * stream::SEGMENT);
                    let range = (self.offset + n * seg, plain + stream::TAG);
                    // a segment shared with the previous range is read once
                    if out.last() != Some(&range) {
                        out.push(range);
                    }
                }
            }
        }
    }

    /// Drops what the object keeps of `len` bytes at `at` within the span (of a sealed span,
    /// the segments holding them), so that the next read asks the origin again
    /// (`RangeRead::forget`, docs/STORE.md §7.4); `false` for a local file.
    pub fn forget(&self, at: u64, len: u64) -> bool {
        let (from, n) = match self.sealed {
            None => (at, len),
            Some(_) if len == 0 => (0, 0),
            Some(_) => {
                let seg = stream::SEGMENT + stream::TAG;
                let first = at / stream::SEGMENT;
                let last = at.saturating_add(len - 1) / stream::SEGMENT;
                let from = first.saturating_mul(seg);
                let to = last
                    .saturating_add(1)
                    .saturating_mul(seg)
                    .min(self.stored_len());
                (from, to.saturating_sub(from))
            }
        };
        self.src.forget(self.offset.saturating_add(from), n)
    }
}

/// The kinds of container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    Oimg,
    Iso,
    /// A version in an osimage store: the manifest in the version object, each pack an
    /// object of its own (docs/STORE.md §2).
    Store,
}

/// Opens the spans of a store image's packs, given their manifest records (each id names an
/// object), in manifest order.
pub type PackOpener = Arc<dyn Fn(&[PackRecord]) -> Result<Vec<Span>, PayloadError> + Send + Sync>;

/// An opened container: where the manifest is, and how to find packs.
pub struct Container {
    pub path: PathBuf,
    pub kind: ContainerKind,
    pub manifest: Span,
    /// `.oimg`: packs start here, back to back. ISO: unused.
    packs_start: u64,
    /// ISO: each pack's span, by index.
    iso_packs: Vec<Span>,
    image_id: Option<[u8; 16]>,
    /// The data key of an encrypted image.
    key: Option<ImageKey>,
    /// Store: BLAKE3 of the manifest frame as the version's head records it.
    frame_hash: Option<[u8; 32]>,
    /// Store: opens each pack's object.
    open_pack: Option<PackOpener>,
    /// An encrypted store's version: the key its manifest frame is sealed with (STORE.md §6).
    manifest_cipher: Option<Arc<StreamCipher>>,
}

/// Opens the image at `path`, whichever container it is; an encrypted one with `unlock`.
pub fn open(path: &Path, unlock: &Unlock) -> Result<Container, PayloadError> {
    let file = File::open(path).map_err(|e| PayloadError::io("cannot open", path, e))?;
    open_file(path, file, unlock)
}

/// Opens the image already open as `file` (`path` names it in messages); every later read of
/// the container goes to this open file, never to `path` again.
pub fn open_file(path: &Path, file: File, unlock: &Unlock) -> Result<Container, PayloadError> {
    // Seeking to the end sizes block devices too (a CD-ROM, a USB stick), where stat says 0.
    std::io::Seek::seek(&mut &file, std::io::SeekFrom::End(0))
        .map_err(|e| PayloadError::io("cannot size", path, e))?;
    open_backing(path, Backing::file(Arc::new(file)), unlock)
}

/// Opens the image whose bytes `src` reads (an HTTP object: docs/STORE.md §7); `name` names
/// it in messages (a URL without its query).
pub fn open_source(
    name: &Path,
    src: Arc<dyn RangeRead>,
    unlock: &Unlock,
) -> Result<Container, PayloadError> {
    open_backing(name, Backing::remote(src), unlock)
}

fn open_backing(path: &Path, b: Backing, unlock: &Unlock) -> Result<Container, PayloadError> {
    let len = b.source().len();
    let mut head = [0u8; RECORD_LEN];
    let got = read_up_to(&**b.source(), &mut head, 0)
        .map_err(|e| PayloadError::io("cannot read", path, e))?;
    if got == RECORD_LEN && crate::format::records::is_image_header(&head) {
        return oimg::open(path, b, len, &head, unlock).map_err(|e| e.at(path));
    }
    if iso::is_iso(&**b.source()) {
        return iso::open(path, b, unlock);
    }
    Err(PayloadError::Image {
        path: path.to_path_buf(),
        msg: "not an osimage image (neither a .oimg payload nor an ISO with an /osimage folder)"
            .into(),
    })
}

/// An image whose manifest frame is `manifest` and whose packs `open_pack` opens one by
/// one: a version in a store (docs/STORE.md §2.5), named `name` in messages. The frame must
/// hash to `frame_hash` and hold image `image_id`, as the version's head says.
pub fn from_parts(
    name: &Path,
    manifest: Span,
    frame_hash: [u8; 32],
    image_id: [u8; 16],
    open_pack: PackOpener,
) -> Container {
    Container {
        path: name.to_path_buf(),
        kind: ContainerKind::Store,
        manifest,
        packs_start: 0,
        iso_packs: Vec::new(),
        image_id: Some(image_id),
        key: None,
        frame_hash: Some(frame_hash),
        open_pack: Some(open_pack),
        manifest_cipher: None,
    }
}

/// Which container `src` holds, judged by its first bytes alone (a `.oimg` header, or an
/// ISO with an /osimage folder); `None` for anything else. Nothing is decrypted or checked
/// beyond that: `verify` does the rest.
pub fn kind_of(src: &dyn RangeRead) -> std::io::Result<Option<ContainerKind>> {
    let mut head = [0u8; RECORD_LEN];
    let got = read_up_to(src, &mut head, 0)?;
    if got == RECORD_LEN && crate::format::records::is_image_header(&head) {
        return Ok(Some(ContainerKind::Oimg));
    }
    Ok(iso::is_iso(src).then_some(ContainerKind::Iso))
}

/// Reads and unwraps the key record of an encrypted image: `read(buf, at)` reads the record's
/// bytes (at 0 its 64-byte header) wherever the container keeps it.
pub(crate) fn read_key(
    path: &Path,
    unlock: &Unlock,
    read: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>,
) -> Result<(ImageKey, u64), PayloadError> {
    use crate::envelope::keys::{KEYS_HEADER_LEN, KeysHeader, open_key};
    let mut head = [0u8; KEYS_HEADER_LEN];
    read(&mut head, 0).map_err(|e| PayloadError::io("cannot read the key record of", path, e))?;
    let h = KeysHeader::decode(&head).map_err(|e| e.at(path))?;
    let mut wrapped = vec![0u8; h.age_len as usize];
    read(&mut wrapped, KEYS_HEADER_LEN as u64)
        .map_err(|e| PayloadError::io("cannot read the key record of", path, e))?;
    let key = open_key(&h, &wrapped, unlock, path)?;
    Ok((
        ImageKey::new(key, h.image_id),
        (KEYS_HEADER_LEN + wrapped.len()) as u64,
    ))
}

impl Container {
    /// Reads the manifest frame's bytes (decrypted, for an encrypted image).
    ///
    /// The frame header is read and checked first (FORMAT.md §4: a body of at most 1 GiB),
    /// and the record must hold exactly header + body: a record's length is never allocated
    /// on its word alone (issue #20: an ISO record claiming 4 GiB aborted the allocation).
    pub fn manifest_bytes(&self) -> Result<Vec<u8>, PayloadError> {
        self.manifest_header()?;
        let mut buf = vec![0u8; self.manifest.len as usize];
        self.manifest
            .read_exact_at(&mut buf, 0)
            .map_err(|e| PayloadError::io("cannot read the manifest of", &self.path, e))?;
        if let Some(want) = self.frame_hash
            && *blake3::hash(&buf).as_bytes() != want
        {
            return Err(PayloadError::Image {
                path: self.path.clone(),
                msg: "the manifest does not match the hash its version records (damaged or \
                      altered)"
                    .into(),
            });
        }
        match (&self.key, &self.manifest_cipher) {
            (Some(k), _) => k.open_manifest(&buf).map_err(|e| e.at(&self.path)),
            (None, Some(c)) => {
                crate::envelope::open_manifest_with(c, &buf).map_err(|e| e.at(&self.path))
            }
            (None, None) => Ok(buf),
        }
    }

    /// Reads and checks the manifest frame's header: the record must hold exactly header +
    /// body (the frame's bytes as stored; for an encrypted image, its sealed header).
    fn manifest_header(&self) -> Result<FrameHeader, PayloadError> {
        let mut head = [0u8; RECORD_LEN];
        self.manifest
            .read_exact_at(&mut head, 0)
            .map_err(|e| PayloadError::io("cannot read the manifest of", &self.path, e))?;
        let frame = FrameHeader::decode(&head).map_err(|e| e.at(&self.path))?;
        if frame.stored_len.checked_add(RECORD_LEN as u64) != Some(self.manifest.len) {
            return Err(PayloadError::Image {
                path: self.path.clone(),
                msg: format!(
                    "the manifest record has {} bytes but its frame header says {} \
                     (damaged or altered)",
                    self.manifest.len,
                    frame.stored_len.saturating_add(RECORD_LEN as u64)
                ),
            });
        }
        Ok(frame)
    }

    /// This store version's manifest frame is sealed with `cipher` (an encrypted store,
    /// STORE.md §6); its packs come sealed from the `PackOpener`.
    pub fn with_manifest_cipher(mut self, cipher: Arc<StreamCipher>) -> Self {
        self.manifest_cipher = Some(cipher);
        self
    }

    /// The length of the object the image lies in (the file, or the HTTP object).
    pub fn object_len(&self) -> u64 {
        self.manifest.src.len()
    }

    /// Whether the image is encrypted.
    pub fn encrypted(&self) -> bool {
        self.key.is_some() || self.manifest_cipher.is_some()
    }

    /// Locates every pack the manifest lists and checks its length and header: the image's own
    /// pack at its position or, when the manifest names a store, a pack of that store.
    pub fn packs(&self, m: &Manifest) -> Result<Vec<Span>, PayloadError> {
        let spans = match self.kind {
            ContainerKind::Oimg => {
                let mut at = self.packs_start;
                let mut v = Vec::with_capacity(m.packs.len());
                for (i, p) in m.packs.iter().enumerate() {
                    let span = Span {
                        len: p.len,
                        sealed: self
                            .key
                            .as_ref()
                            .map(|k| k.cipher(StreamId::Pack(i as u32))),
                        ..self.manifest.at(at)
                    };
                    at = at.saturating_add(span.stored_len());
                    v.push(span);
                }
                if at != self.manifest.offset {
                    return Err(PayloadError::Image {
                        path: self.path.clone(),
                        msg: "pack lengths do not add up to the manifest's offset (damaged image)"
                            .into(),
                    });
                }
                v
            }
            ContainerKind::Iso => self.iso_packs_plain()?,
            ContainerKind::Store => {
                let open = self.open_pack.as_ref().ok_or_else(|| {
                    PayloadError::format("internal: a store image without its packs")
                })?;
                open(&m.packs)?
            }
        };
        if spans.len() != m.packs.len() {
            return Err(PayloadError::Image {
                path: self.path.clone(),
                msg: format!("{} packs listed, {} present", m.packs.len(), spans.len()),
            });
        }
        // FORMAT.md §3, §14: the store record says which form every pack has.
        let store = store_ref::from_manifest(m).map_err(|e| e.at(&self.path))?;
        for (i, (span, rec)) in spans.iter().zip(&m.packs).enumerate() {
            // A store's pack is an object of its own, named by its id: say which.
            let label = match (self.kind, span.object()) {
                (ContainerKind::Store, Some(key)) => {
                    format!("pack {} (object {key})", hex(&rec.hash))
                }
                (ContainerKind::Store, None) => format!("pack {i} ({})", hex(&rec.hash)),
                _ => format!("pack {i}"),
            };
            let bad = |msg: String| PayloadError::Image {
                path: self.path.clone(),
                msg: format!("{label}: {msg}"),
            };
            if span.len != rec.len {
                return Err(bad(format!(
                    "{} bytes, {} expected (truncated?)",
                    span.len, rec.len
                )));
            }
            let mut head = [0u8; RECORD_LEN];
            span.read_exact_at(&mut head, 0)
                .map_err(|e| bad(format!("cannot read its header: {e}")))?;
            let h = PackHeader::decode(&head).map_err(|e| bad(e.to_string()))?;
            check_pack_owner(&h, i as u32, &m.image.id, store.as_ref())
                .map_err(|e| bad(e.to_string()))?;
        }
        if let Some(id) = self.image_id
            && id != m.image.id
        {
            return Err(PayloadError::Image {
                path: self.path.clone(),
                msg: "image id in the header does not match the manifest".into(),
            });
        }
        Ok(spans)
    }

    /// The ISO's pack extents, as plaintext spans when the image is encrypted.
    fn iso_packs_plain(&self) -> Result<Vec<Span>, PayloadError> {
        let Some(key) = &self.key else {
            return Ok(self.iso_packs.clone());
        };
        let mut v = Vec::with_capacity(self.iso_packs.len());
        for (i, s) in self.iso_packs.iter().enumerate() {
            let len = stream::plain_len(s.len).ok_or_else(|| PayloadError::Image {
                path: self.path.clone(),
                msg: format!(
                    "pack {i}: {} bytes is no encrypted length (truncated?)",
                    s.len
                ),
            })?;
            v.push(Span {
                len,
                sealed: Some(key.cipher(StreamId::Pack(i as u32))),
                ..s.clone()
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An object that only records what it is asked to forget.
    #[derive(Default)]
    struct Forgetful(Mutex<Vec<(u64, u64)>>);

    impl RangeRead for Forgetful {
        fn read_exact_at(&self, _: &mut [u8], _: u64) -> std::io::Result<()> {
            Err(std::io::Error::other("not read here"))
        }
        fn len(&self) -> u64 {
            1 << 30
        }
        fn describe(&self) -> String {
            "forgetful".into()
        }
        fn forget(&self, at: u64, len: u64) -> bool {
            self.0.lock().unwrap().push((at, len));
            true
        }
    }

    #[test]
    fn a_span_forgets_the_object_bytes_its_range_lies_in() {
        let src = Arc::new(Forgetful::default());
        let plain = Backing::remote(src.clone()).span(1000, 500_000);
        assert!(plain.forget(10, 20));
        // A sealed span: plaintext 70000..70010 lies in segment 1, stored after segment 0
        // and its tag (FORMAT.md §11.3); a range across segments 0 and 1 takes both.
        let sealed = Span {
            sealed: Some(Arc::new(StreamCipher::new(
                &[7; 32],
                &[1; 16],
                StreamId::Pack(0),
            ))),
            ..plain.clone()
        };
        let seg = stream::SEGMENT + stream::TAG;
        assert!(sealed.forget(70_000, 10));
        assert!(sealed.forget(stream::SEGMENT - 1, 2));
        // The last segment is cut at the span's stored end.
        assert!(sealed.forget(499_999, 1));
        let last = 499_999 / stream::SEGMENT;
        assert_eq!(
            *src.0.lock().unwrap(),
            [
                (1010, 20),
                (1000 + seg, seg),
                (1000, 2 * seg),
                (1000 + last * seg, sealed.stored_len() - last * seg),
            ]
        );
        // Plans: the plain span moves ranges by its offset; the sealed one names segments.
        let mut out = Vec::new();
        plain.plan_read(10, 20, &mut out);
        plain.plan_read(499_990, 11, &mut out); // past the end: nothing
        sealed.plan_read(70_000, 10, &mut out);
        sealed.plan_read(stream::SEGMENT - 1, 2, &mut out); // segments 0 and 1
        sealed.plan_read(499_999, 1, &mut out);
        assert_eq!(
            out,
            [
                (1010, 20),
                (1000 + seg, seg),
                (1000, seg),
                (1000 + seg, seg),
                (
                    1000 + last * seg,
                    500_000 - last * stream::SEGMENT + stream::TAG
                ),
            ]
        );
        // A local file has nothing fresher to offer.
        let file = Arc::new(tempfile::tempfile().expect("temp file"));
        assert!(!Span::plain(file, 0, 10).forget(0, 10));
    }
}
