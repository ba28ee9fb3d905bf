//! ISO 9660 + Rock Ridge + Joliet + El Torito writer (hybrid MBR/GPT) and a small reader.
