//! Put captured files back into a directory with every piece of metadata (extract, restore --to).
