//! Stage 2 of capture: content-defined chunks, BLAKE3 dedup, zstd blocks, bounded packs and the
//! manifest; and the reader for all of it (docs/FORMAT.md). The format's types, records and
//! checks are `crate::format`'s; this is the pipeline that writes and reads them.
//!
//! `writer` runs the capture pipeline (read → cut → hash → dedup → compress → pack; blocks
//! already stored are copied from a refresh's base by `carry` or referenced in a store by
//! `reference`), `reader` opens an image wherever it lives and hands out verified chunks
//! (checked first by `format::validate`), `verify` checks every byte. `id_index` finds
//! the capture's chunks by id, `rests` keeps their whole hashes beyond the ids, mostly on disk.

pub mod block_chunks;
pub mod carry;
pub mod chunker;
pub mod codec;
mod id_index;
pub mod packer;
pub mod reader;
pub mod reference;
mod rests;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod store_packs_tests;
