//! Stage 2 of capture: content-defined chunks, BLAKE3 dedup, zstd blocks, bounded packs and the
//! manifest; and the reader for all of it (docs/FORMAT.md).

pub mod manifest;
