//! Read-only file mappings (memmap2's constructor is `unsafe`, so it lives in this module).

use std::fs::File;

/// Map `file` read-only into memory.
pub fn map_file(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and private to us. As for every mmap-based loader
    // (llama.cpp included), another process truncating or rewriting the model file while it is
    // mapped would change or invalidate these pages; we document that model files must not be
    // modified while Ember runs.
    unsafe { memmap2::MmapOptions::new().map(file) }
}
