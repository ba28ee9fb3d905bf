//! osimage: turn an installed Linux system into one bootable ISO that restores it exactly.
//!
//! The modules follow the pipeline (docs/DESIGN.md), on the ground floor of `format`, the image
//! format as data (docs/FORMAT.md): `scan` walks the root, `payload` chunks, dedups, compresses
//! and packs it and reads it back, `image` says where an image's bytes live (a `.oimg` file or
//! an ISO), `extract` puts files back, `iso` writes and reads ISO 9660, and `cli` is the thin
//! command line on top.

pub mod agent;
pub mod bootcheck;
pub mod capture;
pub mod cli;
pub mod envelope;
pub mod extract;
pub mod format;
pub mod image;
pub mod iso;
pub mod layout;
pub mod payload;
pub mod progress;
pub mod refresh;
pub mod rescue;
pub mod restore;
pub mod scan;
pub mod schedule;
pub mod signature;
pub mod sys;
pub mod units;
