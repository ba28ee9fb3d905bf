//! Reading one regular file's content safely: opened without following links, checked against
//! the walk's record, holes found with SEEK_DATA/SEEK_HOLE, re-checked after reading.
