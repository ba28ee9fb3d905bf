//! (filled in by the issue #19 helper)
