//! The portable path: reads the (tiny) plan back to the host and moves each run of rows that keeps
//! the same entries at the same offset with one `slice_assign`.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

pub fn kv_relocate<B: Backend>(
    mut cache: Tensor<B, 4>,
    block: Tensor<B, 4>,
    src: Tensor<B, 2, Int>,
    dst: Tensor<B, 1, Int>,
) -> Tensor<B, 4> {
    let [b, l] = src.dims();
    let src = host(src.into_data());
    let dst = host(dst.into_data());
    let keep = |r: usize| -> Vec<usize> { src[r * l..(r + 1) * l].iter().take_while(|&&i| i >= 0).map(|&i| i as usize).collect() };
    let device = cache.device();
    let mut start = 0;
    while start < b {
        let idx = keep(start);
        let mut end = start + 1;
        while end < b && dst[end] == dst[start] && keep(end) == idx {
            end += 1;
        }
        if !idx.is_empty() {
            let at = dst[start] as usize;
            cache = write_rows(cache, &block, start..end, &idx, at..at + idx.len(), &device);
        }
        start = end;
    }
    cache
}

fn host(data: TensorData) -> Vec<i64> {
    data.convert::<i64>().to_vec().expect("int data converts to i64")
}

fn write_rows<B: Backend>(
    cache: Tensor<B, 4>,
    block: &Tensor<B, 4>,
    rows: std::ops::Range<usize>,
    idx: &[usize],
    dst: std::ops::Range<usize>,
    device: &B::Device,
) -> Tensor<B, 4> {
    let [_, h, _, d] = block.dims();
    let src_rows = block.clone().slice([rows.clone(), 0..h]);
    let contiguous = idx.iter().enumerate().all(|(j, &i)| i == idx[0] + j);
    let src = if contiguous {
        src_rows.slice([0..rows.len(), 0..h, idx[0]..idx[0] + idx.len(), 0..d])
    } else {
        let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        src_rows.select(2, Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [idx.len()]), device))
    };
    cache.slice_assign([rows, 0..h, dst, 0..d], src)
}
