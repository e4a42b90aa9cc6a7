//! Host memory for the weights of a host-resident backend (Flex), in transparent huge pages.
//!
//! A decode step on the CPU streams every weight once, and one core's hardware prefetchers stop
//! at every 4 KiB page boundary. Measured on this project's machine (Zen 4, one thread, the
//! default model's 538 MB of f32 weights, docs/skinny-matmul.md "Huge pages"): the few-row
//! kernels read them in 20.8–26.0 ms from 4 KiB pages and in 16.2–16.6 ms from 2 MiB pages. The
//! page cache already gives mmap'd files large folios, which is one reason llama.cpp, which
//! multiplies its weights straight from the mapped GGUF, streams faster than a process that
//! copies them into ordinary heap memory.
//!
//! So the loader copies large weights into chunks of 2 MiB-aligned memory advised as huge pages
//! (`madvise(MADV_HUGEPAGE)`, which a system with transparent huge pages in `madvise` mode, the
//! common default, honours) before the first write. Each tensor's bytes are a disjoint slice of a
//! chunk behind burn's [`AllocationController`], so Flex takes them without a copy; a chunk is
//! freed when the last tensor in it is. Where huge pages are off or the call fails, the memory is
//! ordinary pages and nothing else changes.
//!
//! The price is paid once, at load: a huge page is zeroed whole on its first write. On this
//! project's virtual machine that cost 1.9 s of system time for the 538 MB of the default model's
//! f32 weights (load 0.5 → 2.1–3.2 s), where each first touch of guest memory also faults on the
//! host; on bare metal zeroing 538 MB takes about a tenth of a second. `REDRAFTER_HUGE_PAGES=0`
//! turns the arena off (ordinary pages, the old load time). The default weights (`native`, GGUF
//! blocks) do not use it.

use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use burn::tensor::{Bytes, DType, TensorData};
use burn_std::{AllocationController, AllocationProperty};
use redrafter_io::HostTensor;

/// Alignment and granularity of a huge page on x86-64 and aarch64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;
/// Chunk size: weights are packed into chunks this large (a larger tensor gets its own chunk).
const CHUNK: usize = 64 << 20;
/// Alignment of every tensor inside a chunk: a cache line, enough for any SIMD load.
const ALIGN: usize = 64;
/// Tensors smaller than this stay in ordinary memory (norms, biases): not worth a slice.
const MIN_BYTES: usize = 256 << 10;

/// One 2 MiB-aligned allocation, freed when the last slice of it goes.
struct Chunk {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the chunk is plain memory; slices handed out are disjoint, and each is accessed only
// through the one `Bytes` that owns it.
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

/// A tensor's bytes: `len` bytes at `offset` in `chunk`, owned by exactly one `Bytes`.
struct Slice {
    chunk: Arc<Chunk>,
    offset: usize,
    len: usize,
}

impl AllocationController for Slice {
    fn alloc_align(&self) -> usize {
        ALIGN
    }

    fn property(&self) -> AllocationProperty {
        AllocationProperty::Native
    }

    unsafe fn memory_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: the slice lies inside the chunk, and no other slice overlaps it.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.ptr.as_ptr().add(self.offset).cast(), self.len) }
    }

    fn memory(&self) -> &[MaybeUninit<u8>] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.chunk.ptr.as_ptr().add(self.offset).cast(), self.len) }
    }
}

/// Whether the loader should use the arena: yes unless `REDRAFTER_HUGE_PAGES=0`.
pub fn enabled() -> bool {
    std::env::var("REDRAFTER_HUGE_PAGES").map_or(true, |v| v != "0")
}

/// Packs weights into huge-page chunks (see the module doc).
#[derive(Default)]
pub struct WeightArena {
    /// The chunk being filled and the first free byte in it.
    current: Mutex<Option<(Arc<Chunk>, usize)>>,
}

impl WeightArena {
    pub fn new() -> Self {
        Self::default()
    }

    /// `t` as f32 tensor data: in the arena when it is large enough to be worth it, else (or
    /// when the memory cannot be had) the ordinary way, moving `t`'s buffer.
    pub fn data(&self, t: HostTensor) -> TensorData {
        if std::mem::size_of_val(t.data.as_slice()) >= MIN_BYTES {
            if let Some(d) = self.f32_data(&t.data, t.shape.clone()) {
                return d;
            }
        }
        TensorData::new(t.data, t.shape)
    }

    /// `values` [shape] as f32 tensor data in the arena; `None` when the memory cannot be had.
    fn f32_data(&self, values: &[f32], shape: Vec<usize>) -> Option<TensorData> {
        let len = std::mem::size_of_val(values);
        if len == 0 {
            return None;
        }
        let (chunk, offset) = if len > CHUNK {
            // A tensor larger than a chunk gets its own; the chunk being filled stays current.
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
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr().cast::<u8>(), chunk.ptr.as_ptr().add(offset), len) };
        let slice = Slice { chunk, offset, len };
        // SAFETY: all `len` bytes of the slice were written above.
        let bytes = unsafe { Bytes::from_controller(Box::new(slice), len) };
        Some(TensorData::from_bytes(bytes, shape, DType::F32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Tensor;

    #[test]
    fn tensors_in_the_arena_hold_their_values_and_outlive_it() {
        let arena = WeightArena::new();
        let a: Vec<f32> = (0..1000).map(|v| v as f32).collect();
        let b: Vec<f32> = (0..(3 << 20)).map(|v| -(v as f32)).collect();
        let (da, db) = (arena.f32_data(&a, vec![10, 100]).unwrap(), arena.data(HostTensor::new(vec![3 << 20], b.clone())));
        drop(arena);
        let dev = Default::default();
        let (ta, tb) = (Tensor::<NdArray, 2>::from_data(da, &dev), Tensor::<NdArray, 1>::from_data(db.clone(), &dev));
        assert_eq!(ta.into_data().into_vec::<f32>().unwrap(), a);
        assert_eq!(tb.into_data().into_vec::<f32>().unwrap(), b);
        // A clone of the bytes is a copy, not a second owner of the slice.
        assert_eq!(db.clone().into_vec::<f32>().unwrap(), b);
    }
}
