//! Key/value cache with per-row committed lengths.
//!
//! A forward pass does not write the cache: it leaves the new block's keys and values *pending*.
//! The caller then [`commit`](KvCache::commit)s, per row, the block entries to keep, which land in
//! contiguous slots after that row's committed length. Prefill keeps a row's real prompt tokens,
//! autoregressive decoding keeps its one token, and ReDrafter keeps the accepted tree path. Rows
//! never need re-alignment, and rejected draft tokens never touch the cache.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use redrafter_kernels::{KernelBackend, kv_relocate};

use crate::config::LlamaConfig;
use crate::error::ModelError;

#[derive(Debug, Clone)]
struct LayerKv<B: Backend> {
    /// [batch, kv_heads, capacity, head_dim]
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    /// The last forward's block: [batch, kv_heads, T, head_dim]
    pending: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
}

#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerKv<B>>,
    lens: Vec<usize>,
    capacity: usize,
    device: B::Device,
}

impl<B: Backend> KvCache<B> {
    pub fn new(cfg: &LlamaConfig, batch: usize, capacity: usize, device: &B::Device) -> Self {
        let shape = [batch, cfg.num_kv_heads, capacity, cfg.head_dim];
        let layers = (0..cfg.num_layers)
            .map(|_| LayerKv { k: Tensor::zeros(shape, device), v: Tensor::zeros(shape, device), pending: None })
            .collect();
        Self { layers, lens: vec![0; batch], capacity, device: device.clone() }
    }

    pub fn batch_size(&self) -> usize {
        self.lens.len()
    }

    /// Committed tokens per row.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn max_len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Committed keys and values of `layer`, slots `0..max_len()`.
    pub(crate) fn committed(&self, layer: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let l = &self.layers[layer];
        let s = self.max_len();
        let [b, h, _, d] = l.k.dims();
        (l.k.clone().slice([0..b, 0..h, 0..s, 0..d]), l.v.clone().slice([0..b, 0..h, 0..s, 0..d]))
    }

    pub(crate) fn set_pending(&mut self, layer: usize, k: Tensor<B, 4>, v: Tensor<B, 4>) {
        self.layers[layer].pending = Some((k, v));
    }

    /// Length of the pending block, if a forward left one.
    pub fn pending_len(&self) -> Option<usize> {
        self.layers.first()?.pending.as_ref().map(|(k, _)| k.dims()[2])
    }

    /// Drops a pending block without keeping anything.
    pub fn discard_pending(&mut self) {
        self.layers.iter_mut().for_each(|l| l.pending = None);
    }

    /// Rolls row `row` back to `len` committed tokens.
    pub fn truncate(&mut self, row: usize, len: usize) {
        self.lens[row] = self.lens[row].min(len);
    }

    /// Keeps only `rows` (in that order), e.g. to drop finished sequences from a batch.
    pub fn retain_rows(&mut self, rows: &[usize]) {
        // An empty batch would launch zero-element selects, an error on CUDA; callers stop first.
        assert!(!rows.is_empty(), "retain_rows needs at least one row");
        let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [rows.len()]), &self.device);
        for l in &mut self.layers {
            l.k = l.k.clone().select(0, idx.clone());
            l.v = l.v.clone().select(0, idx.clone());
            l.pending = None;
        }
        self.lens = rows.iter().map(|&r| self.lens[r]).collect();
    }
}

/// Commits move the kept entries with the fused relocation kernel on cubecl backends.
impl<B: KernelBackend> KvCache<B> {
    /// Appends, for each row, the pending block entries `keep[row]` (in that order) after the row's
    /// committed tokens, then drops the pending block.
    pub fn commit(&mut self, keep: &[Vec<usize>]) -> Result<(), ModelError> {
        let t = self.pending_len().ok_or_else(|| ModelError::InvalidInput("commit without a pending block".into()))?;
        if keep.len() != self.batch_size() {
            return Err(ModelError::InvalidInput(format!("commit got {} rows, cache has {}", keep.len(), self.batch_size())));
        }
        for (row, idx) in keep.iter().enumerate() {
            if let Some(bad) = idx.iter().find(|&&i| i >= t) {
                return Err(ModelError::InvalidInput(format!("row {row}: block index {bad} >= block length {t}")));
            }
            if self.lens[row] + idx.len() > self.capacity {
                return Err(ModelError::ContextOverflow { row, needed: self.lens[row] + idx.len(), limit: self.capacity });
            }
        }
        let b = self.batch_size();
        let width = keep.iter().map(Vec::len).max().unwrap_or(0);
        if width > 0 {
            // The plan goes to the device once and serves every layer.
            let mut src = vec![-1i64; b * width];
            for (row, idx) in keep.iter().enumerate() {
                for (j, &i) in idx.iter().enumerate() {
                    src[row * width + j] = i as i64;
                }
            }
            let dst: Vec<i64> = self.lens.iter().map(|&l| l as i64).collect();
            let src = Tensor::<B, 2, Int>::from_data(TensorData::new(src, [b, width]), &self.device);
            let dst = Tensor::<B, 1, Int>::from_data(TensorData::new(dst, [b]), &self.device);
            // Tensors are moved, never cloned, so the cache buffers are updated in place.
            self.layers = std::mem::take(&mut self.layers)
                .into_iter()
                .map(|layer| {
                    let (pk, pv) = layer.pending.expect("every layer has a pending block after a forward");
                    let k = kv_relocate(layer.k, pk, src.clone(), dst.clone());
                    let v = kv_relocate(layer.v, pv, src.clone(), dst.clone());
                    LayerKv { k, v, pending: None }
                })
                .collect();
        } else {
            self.discard_pending();
        }
        for (row, idx) in keep.iter().enumerate() {
            self.lens[row] += idx.len();
        }
        Ok(())
    }
}
