//! The portable path: gather the angle rows of the positions, rotate the two halves with
//! broadcast products, concatenate.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

pub fn rotary<B: Backend>(x: Tensor<B, 4>, cos: Tensor<B, 2>, sin: Tensor<B, 2>, positions: Tensor<B, 2, Int>) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let half = d / 2;
    let flat = positions.reshape([b * t]);
    let cos = cos.select(0, flat.clone()).reshape([b, 1, t, half]);
    let sin = sin.select(0, flat).reshape([b, 1, t, half]);
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
    let x2 = x.slice([0..b, 0..h, 0..t, half..d]);
    let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let r2 = x2 * cos + x1 * sin;
    Tensor::cat(vec![r1, r2], 3)
}
