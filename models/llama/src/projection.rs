//! A linear projection of the model: a dense burn `Linear`, or a weight kept in its GGUF block
//! format and multiplied by the block kernels (`redrafter_kernels::block_matmul`).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use redrafter_kernels::block_matmul::Activations;
use redrafter_kernels::{BlockMatrix, KernelBackend, block_matmul, block_matmul_prefill, prefill_matmul, skinny_matmul};

/// How the model's weights are held (`--weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// The file's own formats: GGUF blocks (Q8_0, Q4_0, Q4_1, F16, BF16) stay as stored on Flex
    /// (`BlockMatmulOps::host_resident`); F32 tensors, safetensors files and other backends get f32.
    /// The blocks meet f32 activations ([`Activations::F32`]): the same products as widening
    /// the file to f32, read from the blocks.
    #[default]
    Native,
    /// [`Native`](Self::Native) with activations rounded to 8 bits for integer dot products
    /// ([`Activations::Q8`]), llama.cpp's way: cheaper per weight, different logits.
    NativeQ8,
    /// Every projection and the output head as F16 blocks (Flex; f32 elsewhere).
    F16,
    /// Everything widened to f32, as dense burn tensors (the reference path).
    F32,
}

impl WeightFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::NativeQ8 => "native-q8",
            Self::F16 => "f16",
            Self::F32 => "f32",
        }
    }

    /// Whether a GGUF's own blocks are kept.
    pub fn keeps_blocks(self) -> bool {
        matches!(self, Self::Native | Self::NativeQ8)
    }

    /// What the integer block formats multiply.
    pub fn activations(self) -> Activations {
        if self == Self::NativeQ8 { Activations::Q8 } else { Activations::F32 }
    }
}

impl std::str::FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "native" => Ok(Self::Native),
            "native-q8" => Ok(Self::NativeQ8),
            "f16" => Ok(Self::F16),
            "f32" => Ok(Self::F32),
            other => Err(format!("unknown weight format `{other}` (expected native, native-q8, f16 or f32)")),
        }
    }
}

/// A weight in blocks (nothing to train or save) and an optional dense bias.
#[derive(Module, Debug)]
pub struct BlockLinear<B: Backend> {
    #[module(skip)]
    pub weight: BlockMatrix,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> BlockLinear<B> {
    pub fn new(weight: BlockMatrix) -> Self {
        Self { weight, bias: None }
    }
}

#[derive(Module, Debug)]
pub enum Projection<B: Backend> {
    Dense(Linear<B>),
    Blocks(BlockLinear<B>),
}

impl<B: Backend> Projection<B> {
    pub fn blocks(weight: BlockMatrix) -> Self {
        Self::Blocks(BlockLinear::new(weight))
    }

    pub fn out_features(&self) -> usize {
        match self {
            Self::Dense(l) => l.weight.dims()[1],
            Self::Blocks(b) => b.weight.rows(),
        }
    }

    /// The block format's name, or `f32` for a dense weight.
    pub fn format(&self) -> String {
        match self {
            Self::Dense(_) => "F32".into(),
            Self::Blocks(b) => b.weight.ty().name(),
        }
    }

    /// What the weight multiplies: f32 activations, or 8-bit rows for integer dot products.
    pub fn activations(&self) -> Activations {
        match self {
            Self::Dense(_) => Activations::F32,
            Self::Blocks(b) => b.weight.activations(),
        }
    }

    /// Bytes a product reads from the weight.
    pub fn weight_bytes(&self) -> usize {
        match self {
            Self::Dense(l) => l.weight.dims().iter().product::<usize>() * 4,
            Self::Blocks(b) => b.weight.byte_len(),
        }
    }
}

impl<B: KernelBackend> Projection<B> {
    /// `x [n, in] → [n, out]`: the few-row matmul for a dense weight, the block kernels otherwise.
    /// Each row gets the bits it would get alone (decode steps, trees, draft steps).
    pub fn forward_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = match self {
            Self::Dense(layer) => skinny_matmul(x, layer.weight.val()),
            Self::Blocks(layer) => block_matmul(x, &layer.weight),
        };
        self.add_bias(y)
    }

    /// [`forward_2d`](Self::forward_2d) for a prefill block, where a row's bits may depend on the
    /// others: many rows go to a packing GEMM (block weights widened for the call).
    pub fn forward_prefill_2d(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = match self {
            Self::Dense(layer) => prefill_matmul(x, layer.weight.val()),
            Self::Blocks(layer) => block_matmul_prefill(x, &layer.weight),
        };
        self.add_bias(y)
    }

    fn add_bias(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        let bias = match self {
            Self::Dense(layer) => &layer.bias,
            Self::Blocks(layer) => &layer.bias,
        };
        match bias {
            Some(bias) => y + bias.val().unsqueeze::<2>(),
            None => y,
        }
    }
}
