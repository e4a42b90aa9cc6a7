//! The Flex (CPU) path: writes the kept block entries straight into the cache's buffer.
//!
//! The reference's `slice_assign` is O(whole cache) per call on burn-flex 0.21: it copies its
//! destination even when the destination is uniquely owned (tracel-ai/burn#5575, fixed upstream
//! after 0.21). The reference makes one call per run of rows, so a ragged batch of 16 copied every
//! layer's cache 16 times per decoding step, a third of batched decoding's time.

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType};

/// The updated cache, or the untouched `cache` back when the operands are not what this path
/// handles (f32 4-D cache and block, i32/i64 plan, every slot in range): the caller then runs the
/// reference. A shared cache is copied once, never written through.
pub fn kv_relocate(mut cache: FlexTensor, block: &FlexTensor, src: &FlexTensor, dst: &FlexTensor) -> Result<FlexTensor, FlexTensor> {
    let Some((b, hkv, cap, d)) = dims4(&cache) else { return Err(cache) };
    let Some((bb, bh, t, bd)) = dims4(block) else { return Err(cache) };
    let (Some(src), Some(dst)) = (ints(src), ints(dst)) else { return Err(cache) };
    if cache.dtype() != DType::F32 || block.dtype() != DType::F32 || (bb, bh, bd) != (b, hkv, d) || dst.len() != b {
        return Err(cache);
    }
    let width = if b == 0 { 0 } else { src.len() / b };
    if width * b != src.len() {
        return Err(cache);
    }
    let keep = |r: usize| src[r * width..(r + 1) * width].iter().take_while(|&&i| i >= 0);
    for r in 0..b {
        let n = keep(r).count();
        if keep(r).any(|&i| i as usize >= t) || dst[r] < 0 || dst[r] as usize + n > cap {
            return Err(cache);
        }
    }
    if !(cache.is_contiguous() && cache.layout().start_offset() == 0 && cache.bytes().len() == b * hkv * cap * d * 4) {
        return Err(cache);
    }
    if !cache.is_unique() {
        let copy = cache.storage::<f32>().to_vec();
        cache = FlexTensor::new(Bytes::from_elems(copy), cache.layout().clone(), DType::F32);
    }
    let from: &[f32] = block.storage();
    let bl: &Layout = block.layout();
    let inner = bl.strides()[3];
    let out = cache.try_storage_mut::<f32>().expect("the cache was made unique above");
    for r in 0..b {
        for (j, &i) in keep(r).enumerate() {
            for h in 0..hkv {
                let to = ((r * hkv + h) * cap + dst[r] as usize + j) * d;
                let at = bl.index(&[r, h, i as usize, 0]);
                if inner == 1 {
                    out[to..to + d].copy_from_slice(&from[at..at + d]);
                } else {
                    for e in 0..d {
                        out[to + e] = from[bl.index(&[r, h, i as usize, e])];
                    }
                }
            }
        }
    }
    Ok(cache)
}

fn dims4(t: &FlexTensor) -> Option<(usize, usize, usize, usize)> {
    let s = t.layout().shape();
    (s.num_dims() == 4).then(|| (s[0], s[1], s[2], s[3]))
}

/// The (tiny) plan on the host, in logical order whatever its layout.
pub(crate) fn ints(t: &FlexTensor) -> Option<Vec<i64>> {
    let t = t.to_contiguous();
    match t.dtype() {
        DType::I32 => Some(t.as_slice::<i32>()?.iter().map(|&x| x as i64).collect()),
        DType::I64 => Some(t.as_slice::<i64>()?.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexTensor;
    use burn::tensor::TensorData;

    use super::kv_relocate;

    fn tensor(shape: [usize; 4], f: impl Fn(usize) -> f32) -> FlexTensor {
        let n = shape.iter().product();
        FlexTensor::from_data(TensorData::new((0..n).map(f).collect::<Vec<f32>>(), shape))
    }

    fn plan(src: Vec<i32>, width: usize, dst: Vec<i32>) -> (FlexTensor, FlexTensor) {
        let b = dst.len();
        (FlexTensor::from_data(TensorData::new(src, [b, width])), FlexTensor::from_data(TensorData::new(dst, [b])))
    }

    /// The point of this path: a uniquely owned cache keeps its buffer (no copy).
    #[test]
    fn unique_cache_is_written_in_place() {
        let cache = tensor([2, 1, 6, 2], |_| 0.0);
        let block = tensor([2, 1, 3, 2], |i| i as f32 + 1.0);
        let (src, dst) = plan(vec![2, 0, 1, -1], 2, vec![1, 4]);
        let before = std::sync::Arc::as_ptr(&cache.data_arc());
        let out = kv_relocate(cache, &block, &src, &dst).expect("handled");
        assert_eq!(std::sync::Arc::as_ptr(&out.data_arc()), before, "the cache buffer was reallocated");
        let v = out.into_data().to_vec::<f32>().unwrap();
        // row 0: slots 1, 2 <- block entries 2, 0; row 1: slot 4 <- block entry 1.
        let expect = [0., 0., 5., 6., 1., 2., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 9., 10., 0., 0.];
        assert_eq!(v, expect);
    }

    #[test]
    fn shared_cache_is_copied_and_strided_block_is_read() {
        let cache = tensor([1, 2, 3, 2], |i| -(i as f32));
        let keep_alive = cache.clone();
        // A [1, 3, 2, 2] tensor seen as [1, 2, 3, 2] through a permutation, as the model's blocks are.
        let block = tensor([1, 3, 2, 2], |i| 100.0 + i as f32).permute(&[0, 2, 1, 3]);
        let (src, dst) = plan(vec![1], 1, vec![2]);
        let out = kv_relocate(cache, &block, &src, &dst).expect("handled");
        assert_eq!(keep_alive.into_data().to_vec::<f32>().unwrap(), (0..12).map(|i| -(i as f32)).collect::<Vec<_>>());
        let v = out.into_data().to_vec::<f32>().unwrap();
        // head 0 slot 2 <- block (t 1, head 0) = 104, 105; head 1 slot 2 <- (t 1, head 1) = 106, 107.
        assert_eq!(v, vec![0., -1., -2., -3., 104., 105., -6., -7., -8., -9., 106., 107.]);
    }

    #[test]
    fn out_of_range_plans_are_handed_back() {
        let block = tensor([1, 1, 2, 2], |_| 1.0);
        let (src, dst) = plan(vec![0, 1], 2, vec![2]);
        assert!(kv_relocate(tensor([1, 1, 3, 2], |_| 0.0), &block, &src, &dst).is_err(), "slots past the capacity");
        let (src, dst) = plan(vec![2], 1, vec![0]);
        assert!(kv_relocate(tensor([1, 1, 3, 2], |_| 0.0), &block, &src, &dst).is_err(), "block index past the block");
    }
}
