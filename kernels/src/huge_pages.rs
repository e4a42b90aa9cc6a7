//! Host memory in transparent huge pages, for the weights a CPU decode step streams whole.
//!
//! A decode step on the CPU reads every weight once, and one core's hardware prefetchers stop
//! at every 4 KiB page boundary. Measured on this project's machines (one thread, the default
//! model): the f32 few-row kernels read the 538 MB of f32 weights in 20.8–26.0 ms from 4 KiB
//! pages and in 16.2–16.6 ms from 2 MiB pages (Zen 4, docs/skinny-matmul.md "Huge pages"); the
//! f16 head alone (56.6 MB) takes 5.0 ms from ordinary pages and 3.9 ms from huge pages (Zen 3,
//! docs/benchmarks.md, session 25).
//!
//! So the loader copies large weights into chunks of 2 MiB-aligned memory advised as huge pages
//! (`madvise(MADV_HUGEPAGE)`, which a system with transparent huge pages in `madvise` mode, the
//! common default, honours) before the first write. Each weight is a disjoint [`ArenaBytes`]
//! slice of a chunk; a chunk is freed when the last slice in it is. Where huge pages are off or
//! the call fails, the memory is ordinary pages and nothing else changes.
//!
//! The price is paid once, at load: a huge page is zeroed whole on its first write. On this
//! project's virtual machines that cost about 1.9 s of system time for 538 MB, where each first
//! touch of guest memory also faults on the host; on bare metal zeroing 538 MB takes about a
//! tenth of a second. `REDRAFTER_HUGE_PAGES=0` turns the arena off ([`enabled`]).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// Alignment and granularity of a huge page on x86-64 and aarch64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;
/// Chunk size: weights are packed into chunks this large (a larger weight gets its own chunk).
const CHUNK: usize = 64 << 20;
/// Alignment of every slice inside a chunk: a cache line, enough for any SIMD load.
pub const ALIGN: usize = 64;
/// Weights smaller than this stay in ordinary memory (norms, biases): not worth a slice.
pub const MIN_BYTES: usize = 256 << 10;

/// Whether loaders should use the arena: yes unless `REDRAFTER_HUGE_PAGES=0`.
pub fn enabled() -> bool {
    std::env::var("REDRAFTER_HUGE_PAGES").map_or(true, |v| v != "0")
}

/// One 2 MiB-aligned allocation, freed when the last slice of it goes.
struct Chunk {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the chunk is plain memory; slices handed out are disjoint, and each is accessed only
// through the one `ArenaBytes` that owns it.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(size: usize) -> Option<Self> {
        let layout = Layout::from_size_align(size.div_ceil(HUGE_PAGE) * HUGE_PAGE, HUGE_PAGE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        advise_huge_pages(ptr.as_ptr(), layout.size());
        Some(Self { ptr, layout })
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    const MADV_HUGEPAGE: i32 = 14;
    unsafe extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    // SAFETY: [ptr, ptr + len) is one live allocation of this process; the advice changes how
    // its pages are backed, never their contents. A failure (huge pages off) is harmless.
    let _ = unsafe { madvise(ptr.cast(), len, MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: *mut u8, _: usize) {}

/// `len` initialised bytes at `offset` in a chunk, owned by exactly this value.
pub struct ArenaBytes {
    chunk: Arc<Chunk>,
    offset: usize,
    len: usize,
}

impl ArenaBytes {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the range lies inside the chunk, was written when the slice was made, and no
        // other slice overlaps it.
        unsafe { std::slice::from_raw_parts(self.chunk.ptr.as_ptr().add(self.offset), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above; `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.ptr.as_ptr().add(self.offset), self.len) }
    }
}

/// Packs weights into huge-page chunks (see the module doc).
#[derive(Default)]
pub struct HugePageArena {
    /// The chunk being filled and the first free byte in it.
    current: Mutex<Option<(Arc<Chunk>, usize)>>,
}

impl HugePageArena {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of `data` in the arena; `None` when it is empty or the memory cannot be had.
    pub fn copy(&self, data: &[u8]) -> Option<ArenaBytes> {
        let len = data.len();
        if len == 0 {
            return None;
        }
        let (chunk, offset) = if len > CHUNK {
            // A weight larger than a chunk gets its own; the chunk being filled stays current.
            (Arc::new(Chunk::new(len)?), 0)
        } else {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let (chunk, offset) = match current.take() {
                Some((chunk, free)) if free + len <= chunk.layout.size() => (chunk, free),
                _ => (Arc::new(Chunk::new(CHUNK)?), 0),
            };
            let next = (offset + len).next_multiple_of(ALIGN);
            if next < chunk.layout.size() {
                *current = Some((chunk.clone(), next));
            }
            (chunk, offset)
        };
        // SAFETY: [offset, offset + len) lies inside the chunk, and no other slice reaches it
        // (the next free byte was moved past it above, under the lock).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), chunk.ptr.as_ptr().add(offset), len) };
        Some(ArenaBytes { chunk, offset, len })
    }

    /// [`copy`](Self::copy) of f32 values, as their bytes.
    pub fn copy_f32(&self, values: &[f32]) -> Option<ArenaBytes> {
        // SAFETY: any f32 is 4 initialised bytes; the view covers exactly `values`.
        let bytes = unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) };
        self.copy(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_hold_their_bytes_are_aligned_and_outlive_the_arena() {
        let arena = HugePageArena::new();
        let a: Vec<u8> = (0..1000u32).map(|v| v as u8).collect();
        let b: Vec<u8> = (0..(CHUNK as u32 + 5)).map(|v| (v * 7) as u8).collect();
        let c: Vec<u8> = vec![9; 3 * ALIGN + 1];
        let (sa, sb, mut sc) = (arena.copy(&a).unwrap(), arena.copy(&b).unwrap(), arena.copy(&c).unwrap());
        drop(arena);
        for s in [&sa, &sb, &sc] {
            assert_eq!(s.as_slice().as_ptr() as usize % ALIGN, 0);
        }
        assert_eq!((sa.as_slice(), sb.as_slice(), sc.as_slice()), (&a[..], &b[..], &c[..]));
        sc.as_mut_slice()[0] = 1;
        assert_eq!(sa.as_slice(), &a[..], "a neighbour's write stays in its own slice");
        assert!(HugePageArena::new().copy(&[]).is_none());
    }
}
