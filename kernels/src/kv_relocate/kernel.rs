//! The `#[cube]` KV-relocation kernel and its launcher for `CubeBackend`: one unit per element of
//! the kept entries, [B, Hkv, L, D], writing straight into the cache buffer.

use burn_cubecl::CubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::calculate_cube_count_elemwise;

#[cube(launch)]
fn kv_relocate_kernel<F: Float, I: Int>(
    cache: &mut Tensor<F>,
    block: &Tensor<F>,
    src: &Tensor<I>,
    dst: &Tensor<I>,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let heads = block.shape(1);
    let dim = block.shape(3);
    let keep = src.shape(1);
    let pos = ABSOLUTE_POS;
    if pos >= src.shape(0) * heads * keep * dim {
        terminate!();
    }
    let d = pos % dim;
    let j = (pos / dim) % keep;
    let h = (pos / (dim * keep)) % heads;
    let b = pos / (dim * keep * heads);
    let from = src[b * src.stride(0) + j * src.stride(1)];
    if from >= I::new(0) {
        let slot = usize::cast_from(dst[b * dst.stride(0)]) + j;
        let value = block[b * block.stride(0) + h * block.stride(1) + usize::cast_from(from) * block.stride(2) + d * block.stride(3)];
        cache[b * cache.stride(0) + h * cache.stride(1) + slot * cache.stride(2) + d * cache.stride(3)] = value;
    }
}

pub(crate) fn launch<R: CubeRuntime>(
    cache: CubeTensor<R>,
    block: CubeTensor<R>,
    src: CubeTensor<R>,
    dst: CubeTensor<R>,
) -> CubeTensor<R> {
    // In place unless another tensor still shares the cache's buffer.
    let cache = if cache.can_mut() && cache.is_nonoverlapping() { cache } else { cache.copy() };
    let [b, h, _, d] = [cache.meta.shape()[0], cache.meta.shape()[1], cache.meta.shape()[2], cache.meta.shape()[3]];
    let units = b * h * src.meta.shape()[1] * d;
    if units == 0 {
        return cache;
    }
    let (dtype, int_dtype) = (cache.dtype, src.dtype);
    let cube_dim = CubeDim::new(&cache.client, units);
    let cube_count = calculate_cube_count_elemwise(&cache.client, units, cube_dim);
    kv_relocate_kernel::launch::<R>(
        &cache.client,
        cube_count,
        cube_dim,
        cache.clone().into_tensor_arg(),
        block.into_tensor_arg(),
        src.into_tensor_arg(),
        dst.into_tensor_arg(),
        [dtype.into(), int_dtype.into()],
    );
    cache
}
