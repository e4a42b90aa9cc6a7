//! Conversion between PyTorch's `nn.Linear` layout (weight `[out, in]`) and burn's `Linear`
//! (weight `[in, out]`), used by every loader and by checkpoint writers.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use redrafter_io::HostTensor;

/// A host tensor on `device`, with the rank checked by the caller.
pub fn to_device<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Tensor<B, D> {
    let shape: [usize; D] = t.shape.as_slice().try_into().expect("caller checked the rank");
    Tensor::from_data(TensorData::new(t.data, shape), device)
}

/// Reads a tensor back into host memory as f32.
pub fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32");
    HostTensor::new(shape, data)
}

fn transpose(t: &HostTensor) -> HostTensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let mut out = vec![0f32; t.data.len()];
    for (r, row) in t.data.chunks_exact(cols).enumerate() {
        for (c, v) in row.iter().enumerate() {
            out[c * rows + r] = *v;
        }
    }
    HostTensor::new(vec![cols, rows], out)
}

/// A PyTorch-layout `[out, in]` weight (and bias `[out]`) as a burn `Linear` (`[in, out]`). The
/// transpose happens here, once: a transposed view would be copied by every matmul.
pub fn linear_from_torch<B: Backend>(w: HostTensor, bias: Option<HostTensor>, device: &B::Device) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(to_device(transpose(&w), device)),
        bias: bias.map(|b| Param::from_tensor(to_device(b, device))),
    }
}

/// [`linear_from_torch`] without the transpose: the weight `w` stays as stored, `[out, in]`, and the
/// `Linear` holds its transposed view. For backends whose few-row matmul reads the rows of the
/// stored table directly (Flex: one sequential stream of dot products, faster than the
/// `[in, out]` layout's row updates; docs/skinny-matmul.md); elsewhere the view would cost a copy
/// per matmul. Same values, same `Linear` semantics.
pub fn linear_from_torch_rows<B: Backend>(w: TensorData, bias: Option<HostTensor>, device: &B::Device) -> Linear<B> {
    assert_eq!(w.shape.len(), 2, "a linear weight is [out, in]");
    Linear {
        weight: Param::from_tensor(Tensor::<B, 2>::from_data(w, device).transpose()),
        bias: bias.map(|b| Param::from_tensor(to_device(b, device))),
    }
}

/// The inverse of [`linear_from_torch`]: weight `[out, in]` and bias.
pub fn linear_to_torch<B: Backend>(layer: &Linear<B>) -> (HostTensor, Option<HostTensor>) {
    let w = transpose(&to_host(layer.weight.val()));
    (w, layer.bias.as_ref().map(|b| to_host(b.val())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn linear_round_trip_matches_torch_semantics() {
        let w = HostTensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let b = HostTensor::new(vec![2], vec![0.5, -1.0]);
        let dev = Default::default();
        let lin = linear_from_torch::<NdArray>(w.clone(), Some(b.clone()), &dev);
        // y = W x + b with x = [1, 0, 2]: [1+6+0.5, 4+12-1]
        let x = Tensor::<NdArray, 2>::from_data(TensorData::new(vec![1f32, 0., 2.], [1, 3]), &dev);
        assert_eq!(to_host(lin.forward(x)).data, vec![7.5, 15.0]);
        let (w2, b2) = linear_to_torch(&lin);
        assert_eq!((w2, b2), (w.clone(), Some(b.clone())));
        // The stored-rows form is the same layer.
        let rows = linear_from_torch_rows::<NdArray>(TensorData::new(w.data.clone(), w.shape.clone()), Some(b.clone()), &dev);
        let x = Tensor::<NdArray, 2>::from_data(TensorData::new(vec![1f32, 0., 2.], [1, 3]), &dev);
        assert_eq!(to_host(rows.forward(x)).data, vec![7.5, 15.0]);
        assert_eq!(linear_to_torch(&rows), (w, Some(b)));
    }
}
