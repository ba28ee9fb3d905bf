//! The image format as data, the ground floor every stage builds on: `scan` yields its
//! `Entry`s, `payload` writes and reads its packs and manifest, `image` and `envelope` wrap
//! them in a container, and `extract`, `layout`, `refresh` and `restore` read them back. The
//! spec is docs/FORMAT.md.
//!
//! `manifest` holds the types of the manifest (entries, metadata, the pack, block and chunk
//! tables, extensions), `columns` their version-3 encoding as delta-coded columns, `mount_dirs` the record of the directories under captured mount
//! points (an extension), `store_ref` the record of the store an image's packs belong to (an
//! extension), `records` the fixed-size records with their byte offsets, `frame` the
//! manifest frame's encoding, `validate` the structural checks a reader makes before it trusts
//! a manifest, `sink` the interface through which packs reach a container, and `source` the one
//! through which bytes come back (a file or an HTTP object). This module
//! uses nothing else of the crate: only std and external crates.

pub mod columns;
mod entries;
mod entry_row;
mod error;
pub mod frame;
pub mod manifest;
pub mod mount_dirs;
pub mod records;
pub mod sink;
pub mod source;
pub mod store_ref;
pub mod validate;

pub use error::PayloadError;
