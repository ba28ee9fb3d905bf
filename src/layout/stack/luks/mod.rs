//! LUKS (filled in next)
