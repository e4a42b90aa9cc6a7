//! Matmul against a weight kept in its ggml block format (Q8_0, Q4_0, Q4_1, F16, BF16):
//! `x [m, k] · Wᵀ` with W [n, k] stored row by row as in a GGUF file, for the few token rows of
//! a decode, verification or draft step (docs/skinny-matmul.md, "Block formats").
//!
//! A CPU decode step is bound by reading the weights; widened to f32 they are 4–6x larger than
//! the file's blocks. [`BlockMatrix`] holds the blocks as stored and [`host`] multiplies them
//! without widening. The op is a backend-extension trait like the others: Flex runs the host
//! kernels on its buffers with no copy; every other backend gets the same host kernels through
//! a read-back of x and an upload of y (cheap on the CPU backends; on a GPU the loader keeps
//! dense weights instead). [`reference`] is the same product in plain tensor ops.

pub mod host;
#[cfg(target_arch = "x86_64")]
mod panel;
mod widen;
mod widen_avx512;

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use redrafter_io::gguf::{GgmlType, dequantize, quantize};

use crate::huge_pages::{ArenaBytes, HugePageArena, MIN_BYTES};

/// How the integer formats (Q8_0, Q4_0, Q4_1) meet the activations. F16 and BF16 always
/// multiply f32 activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activations {
    /// The blocks are widened to f32 in registers and multiplied with the unrounded f32 x: the
    /// exact product of the stored weights (up to f32 summation), what `--weights f32` computes
    /// from the same file.
    #[default]
    F32,
    /// x is rounded to 8 bits per 32 values ([`host::QuantRows`]) and the blocks meet it in
    /// integer dot products, llama.cpp's way: fewer instructions per weight, but the rounding
    /// of x changes the logits (and, on SmolLM2-135M, answers).
    Q8,
}

impl Activations {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Q8 => "q8",
        }
    }
}

/// An [n, k] weight (PyTorch's `[out_features, in_features]`) in a ggml block format, in host
/// memory: row `j` is `k / block values` consecutive blocks, exactly as GGUF stores it.
#[derive(Clone)]
pub struct BlockMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Blocks,
    act: Activations,
}

/// Where a matrix's bytes live: the ordinary heap, or a slice of the huge-page arena.
#[derive(Clone)]
enum Blocks {
    Heap(Arc<[u8]>),
    HugePages(Arc<ArenaBytes>),
}

impl std::ops::Deref for Blocks {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Heap(b) => b,
            Self::HugePages(b) => b.as_slice(),
        }
    }
}

impl std::fmt::Debug for BlockMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockMatrix({} [{}, {}], {} bytes, {} activations)", self.ty.name(), self.rows, self.cols, self.data.len(), self.act.name())
    }
}

/// Why a [`BlockMatrix`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockMatrixError {
    /// A type the kernels do not multiply (F32 stays a dense tensor; K-quants are not supported).
    UnsupportedType(String),
    /// `cols` is not a whole number of blocks.
    RaggedRows { ty: String, cols: usize, block: usize },
    /// The byte count does not match `rows × cols` in this format.
    WrongSize { expected: usize, found: usize },
    /// [`BlockMatrix::select_rows`] was asked for a row the matrix does not have.
    RowOutOfRange { row: usize, rows: usize },
}

impl std::fmt::Display for BlockMatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsupportedType(t) => write!(f, "block matmul does not support tensor type {t}"),
            Self::RaggedRows { ty, cols, block } => {
                write!(f, "{ty} rows of {cols} values are not whole blocks of {block}")
            }
            Self::WrongSize { expected, found } => write!(f, "expected {expected} bytes of blocks, found {found}"),
            Self::RowOutOfRange { row, rows } => write!(f, "row {row} is out of range for a matrix of {rows} rows"),
        }
    }
}

impl std::error::Error for BlockMatrixError {}

impl BlockMatrix {
    /// Whether `ty` can be held and multiplied as blocks.
    pub fn supports(ty: GgmlType) -> bool {
        matches!(ty, GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1)
    }

    /// Takes `data` (`rows` rows of `cols` values in format `ty`), checking its size first.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: impl Into<Arc<[u8]>>) -> Result<Self, BlockMatrixError> {
        let data = data.into();
        if !Self::supports(ty) {
            return Err(BlockMatrixError::UnsupportedType(ty.name()));
        }
        let (per, _) = ty.block().expect("supported types have blocks");
        let row_bytes = ty
            .byte_size(cols)
            .ok_or(BlockMatrixError::RaggedRows { ty: ty.name(), cols, block: per })?;
        let expected = rows.checked_mul(row_bytes).unwrap_or(usize::MAX);
        if data.len() != expected {
            return Err(BlockMatrixError::WrongSize { expected, found: data.len() });
        }
        Ok(Self { ty, rows, cols, row_bytes, data: Blocks::Heap(data), act: Activations::default() })
    }

    /// The same matrix with its bytes copied into `arena`'s huge pages, where it is large enough
    /// to be worth it and the memory can be had (else unchanged): the kernels stream it faster
    /// (crate::huge_pages).
    pub fn in_huge_pages(mut self, arena: &HugePageArena) -> Self {
        if self.data.len() >= MIN_BYTES && matches!(self.data, Blocks::Heap(_)) {
            if let Some(bytes) = arena.copy(&self.data) {
                self.data = Blocks::HugePages(Arc::new(bytes));
            }
        }
        self
    }

    /// Whether the bytes live in huge-page memory ([`in_huge_pages`](Self::in_huge_pages)).
    pub fn is_in_huge_pages(&self) -> bool {
        matches!(self.data, Blocks::HugePages(_))
    }

    /// The same blocks multiplied with `act` activations (no effect on F16/BF16).
    pub fn with_activations(mut self, act: Activations) -> Self {
        self.act = act;
        self
    }

    /// The activations the integer formats meet: [`Activations::F32`] for F16/BF16 whatever was set.
    pub fn activations(&self) -> Activations {
        if matches!(self.ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1) { self.act } else { Activations::F32 }
    }

    /// Encodes row-major f32 values `[rows, cols]` as `ty` (ggml's reference rounding).
    pub fn from_f32(ty: GgmlType, rows: usize, cols: usize, values: &[f32]) -> Result<Self, BlockMatrixError> {
        if !Self::supports(ty) {
            return Err(BlockMatrixError::UnsupportedType(ty.name()));
        }
        if values.len() != rows * cols {
            return Err(BlockMatrixError::WrongSize { expected: rows * cols, found: values.len() });
        }
        let per = ty.block().expect("supported types have blocks").0;
        if cols % per != 0 {
            return Err(BlockMatrixError::RaggedRows { ty: ty.name(), cols, block: per });
        }
        Self::new(ty, rows, cols, quantize(ty, values))
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    /// n: output features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// k: input features.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes the kernels read per product: the whole matrix.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Row `j`'s blocks.
    pub fn row(&self, j: usize) -> &[u8] {
        &self.data[j * self.row_bytes..][..self.row_bytes]
    }

    /// The matrix of rows `ids` (in that order), same format and activations: e.g. the output
    /// head over a drafter's reduced vocabulary. Copies the rows' blocks.
    pub fn select_rows(&self, ids: &[u32]) -> Result<Self, BlockMatrixError> {
        let mut data = Vec::with_capacity(ids.len() * self.row_bytes);
        for &j in ids {
            let j = j as usize;
            if j >= self.rows {
                return Err(BlockMatrixError::RowOutOfRange { row: j, rows: self.rows });
            }
            data.extend_from_slice(self.row(j));
        }
        Ok(Self { data: Blocks::Heap(data.into()), rows: ids.len(), ..self.clone() })
    }

    /// Row `j` widened to f32.
    pub fn dequantize_row(&self, j: usize, out: &mut [f32]) {
        dequantize(self.ty, self.row(j), out);
    }

    /// The whole matrix widened to f32, row-major [rows, cols].
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        dequantize(self.ty, &self.data, &mut out);
        out
    }
}

/// `x [m, k] · Wᵀ → [m, n]` with W in blocks. The default runs the host kernels through a
/// read-back (see [`block_matmul`]); a backend whose tensors live in host memory overrides it.
pub trait BlockMatmulOps: Backend {
    /// The product without a copy of x, or `None` when this backend has no direct path.
    fn block_matmul(x: &FloatTensor<Self>, w: &BlockMatrix) -> Option<FloatTensor<Self>> {
        let _ = (x, w);
        None
    }

    /// Whether the loader should keep blocks on this backend: x lives in host memory (no device
    /// sync per projection) and tree attention gives a token the same bits in a tree as alone,
    /// so greedy ReDrafter stays exact on 8-bit activations. Flex only, today.
    fn host_resident() -> bool {
        false
    }
}

/// Tensor-level entry point: `x [m, k] · Wᵀ`. Bit-identical per row whatever `m` (see [`host`]).
pub fn block_matmul<B: BlockMatmulOps>(x: Tensor<B, 2>, w: &BlockMatrix) -> Tensor<B, 2> {
    if !crate::fused() {
        return reference(x, w);
    }
    let [m, k] = x.dims();
    assert_eq!(k, w.cols(), "block matmul: x has {k} columns, the weight {}", w.cols());
    let prim = x.into_primitive().tensor();
    if let Some(y) = B::block_matmul(&prim, w) {
        return Tensor::from_primitive(TensorPrimitive::Float(y));
    }
    let x = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(prim));
    let device = x.device();
    let xs = x.into_data().convert::<f32>().into_vec::<f32>().expect("f32 data");
    let mut y = vec![0f32; m * w.rows()];
    host::matmul(m, &xs, w, &mut y);
    Tensor::from_data(TensorData::new(y, [m, w.rows()]), &device)
}

/// `x [m, k] · Wᵀ` for a block whose rows need not get a decode step's bits (prefill, training
/// features): above [`MAX_ROWS`](crate::skinny_matmul::MAX_ROWS) rows on a host-resident backend,
/// W is widened to f32 for the call and multiplied by the backend's packing GEMM ([`reference`]),
/// which for hundreds of rows beats the block kernels (built to stream W once for a few rows)
/// by more than the widening costs (docs/skinny-matmul.md, "Prefill"). Otherwise [`block_matmul`].
pub fn block_matmul_prefill<B: BlockMatmulOps>(x: Tensor<B, 2>, w: &BlockMatrix) -> Tensor<B, 2> {
    if crate::fused() && B::host_resident() && x.dims()[0] > crate::skinny_matmul::MAX_ROWS {
        return reference(x, w);
    }
    block_matmul(x, w)
}

/// The product in plain tensor ops: W widened to f32 and, with [`Activations::Q8`], x rounded to
/// the 8-bit rows the kernels multiply ([`host::QuantRows`]), then the backend's matmul.
/// Widens the whole weight on every call: for tests and `REDRAFTER_KERNELS=reference`.
pub fn reference<B: Backend>(x: Tensor<B, 2>, w: &BlockMatrix) -> Tensor<B, 2> {
    let [m, k] = x.dims();
    let device = x.device();
    let x = match w.activations() {
        Activations::F32 => x,
        Activations::Q8 => {
            let xs = x.into_data().convert::<f32>().into_vec::<f32>().expect("f32 data");
            Tensor::from_data(TensorData::new(host::QuantRows::new(m, k, &xs).dequantize(), [m, k]), &device)
        }
    };
    let wt = Tensor::<B, 2>::from_data(TensorData::new(w.dequantize(), [w.rows(), w.cols()]), &device);
    x.matmul(wt.transpose())
}

#[cfg(feature = "flex")]
pub(crate) mod flex {
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::tensor::{Bytes, DType, Shape};

    use super::{BlockMatrix, host};

    /// The host kernels on Flex's own buffer; `None` for a non-contiguous or non-f32 x.
    pub fn block_matmul(x: &FlexTensor, w: &BlockMatrix) -> Option<FlexTensor> {
        if x.dtype() != DType::F32 {
            return None;
        }
        let xs = x.layout().shape();
        if xs.num_dims() != 2 || xs[1] != w.cols() {
            return None;
        }
        let m = xs[0];
        let xv = x.as_slice::<f32>()?;
        let mut y = vec![0f32; m * w.rows()];
        host::matmul(m, xv, w, &mut y);
        Some(FlexTensor::new(Bytes::from_elems(y), Layout::contiguous(Shape::new([m, w.rows()])), DType::F32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_rows_are_the_rows_in_order() {
        let (rows, cols) = (5, 64);
        let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        for ty in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::F16] {
            let m = BlockMatrix::from_f32(ty, rows, cols, &values).unwrap().with_activations(Activations::Q8);
            let full = m.dequantize();
            let sel = m.select_rows(&[4, 0, 2]).unwrap();
            assert_eq!((sel.rows(), sel.cols(), sel.ty()), (3, cols, ty));
            assert_eq!(sel.activations(), m.activations());
            let want: Vec<f32> = [4, 0, 2].iter().flat_map(|&j| full[j * cols..(j + 1) * cols].to_vec()).collect();
            assert_eq!(sel.dequantize(), want);
            assert_eq!(m.select_rows(&[1, 5]).unwrap_err(), BlockMatrixError::RowOutOfRange { row: 5, rows });
        }
    }
}
