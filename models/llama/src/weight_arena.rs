//! f32 weights of a host-resident backend (Flex) in transparent huge pages, as burn tensor data.
//!
//! The memory is [`redrafter_kernels::huge_pages`] (why, what it costs, how to turn it off);
//! this module hands each large f32 weight to burn as [`TensorData`] whose bytes are one
//! [`ArenaBytes`] slice behind burn's [`AllocationController`], so Flex takes them without a
//! copy. The GGUF blocks of `native` and `f16` go to the same arena as
//! [`BlockMatrix::in_huge_pages`](redrafter_kernels::BlockMatrix::in_huge_pages).

use std::mem::MaybeUninit;

use burn::tensor::{Bytes, DType, TensorData};
use burn_std::{AllocationController, AllocationProperty};
use redrafter_io::HostTensor;
pub use redrafter_kernels::huge_pages::enabled;
use redrafter_kernels::huge_pages::{ALIGN, ArenaBytes, HugePageArena, MIN_BYTES};

/// A tensor's bytes: one arena slice, owned by exactly one `Bytes`.
struct Slice(ArenaBytes);

impl AllocationController for Slice {
    fn alloc_align(&self) -> usize {
        ALIGN
    }

    fn property(&self) -> AllocationProperty {
        AllocationProperty::Native
    }

    unsafe fn memory_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        let bytes = self.0.as_mut_slice();
        // SAFETY: initialised bytes are valid `MaybeUninit<u8>`; same pointer and length.
        unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast(), bytes.len()) }
    }

    fn memory(&self) -> &[MaybeUninit<u8>] {
        let bytes = self.0.as_slice();
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len()) }
    }
}

/// Packs f32 weights into the huge-page arena (see the module doc).
#[derive(Default)]
pub struct WeightArena {
    arena: HugePageArena,
}

impl WeightArena {
    pub fn new() -> Self {
        Self::default()
    }

    /// The arena itself, for weights kept as blocks.
    pub fn blocks(&self) -> &HugePageArena {
        &self.arena
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
        let slice = self.arena.copy_f32(values)?;
        let len = slice.len();
        // SAFETY: all `len` bytes of the slice were written by the copy.
        let bytes = unsafe { Bytes::from_controller(Box::new(Slice(slice)), len) };
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
