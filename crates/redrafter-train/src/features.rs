//! The frozen LLM's hidden states for training, live or from an on-disk f16 cache.
//!
//! A training position t needs the LLM's post-norm state h_t (spec §6.2). Computing it is one
//! LLM forward over the sequence, about half of a CPU training step with the full draft head and
//! nearly all of it with a reduced one. The cache stores every example's states in f16 the first
//! time a micro-batch touches it, so later epochs (and reruns, and other runs over the same data
//! and model) read them back instead: multi-epoch training costs one LLM pass.
//!
//! The cache is addressed by the model, the sizes and the data source, not by the examples: each
//! slot records which tokens it holds, so a slot whose example changed is recomputed, and a data
//! file that grows (as `distill-data`'s does, run after run) keeps the slots already filled and
//! only computes the new ones.
//!
//! States are always rounded to f16, cached or not, so that a batch gives the same numbers (and
//! the same loss) whether its states were computed now or read back, and a resumed run stays
//! exact whatever the cache held. See docs/training.md, "Hidden-state cache".

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use memmap2::MmapMut;
use redrafter_llama::{BlockInput, KernelBackend, Llama};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TrainError;
use crate::data::Example;
use crate::trainer::io;

/// Bumped when the file layout or the key changes; a cache of another version is rebuilt.
const FORMAT: u32 = 2;

/// What a cache holds: it is only read back for the same values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMeta {
    pub format: u32,
    /// sha256 over the model's identity, the sizes and the data source (see [`cache_key`]).
    pub key: String,
    pub hidden_size: usize,
    /// Rows per slot: the longest sequence training may give (its `--max-len`).
    pub max_len: usize,
    /// One slot per training example, by its index. Reopening with more slots grows the cache
    /// and keeps what it holds; with fewer, the extra slots stay.
    pub slots: usize,
}

impl CacheMeta {
    pub fn new(key: String, hidden_size: usize, max_len: usize, slots: usize) -> Self {
        Self { format: FORMAT, key, hidden_size, max_len, slots }
    }

    /// Whether a cache made for `self` may serve `other`: everything but the slot count.
    fn serves(&self, other: &CacheMeta) -> bool {
        (self.format, &self.key, self.hidden_size, self.max_len) == (other.format, &other.key, other.hidden_size, other.max_len)
    }
}

/// The cache directory's name for states of the model `model_id` (e.g. the sha256 of its
/// weights file and the weight format) over the examples of the data source `data_id`, cut at
/// `max_len` tokens. The examples themselves are not in the key: each slot names its tokens.
pub fn cache_key(model_id: &str, hidden_size: usize, max_len: usize, data_id: &str) -> String {
    let h = Sha256::digest(format!("redrafter-hidden-v{FORMAT}\n{model_id}\n{hidden_size}\n{max_len}\n{data_id}\n"));
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A non-zero digest of one sequence, stored per slot so a slot is only used for its tokens.
fn tokens_digest(tokens: &[u32]) -> u64 {
    let mut x = 0xcbf2_9ce4_8422_2325u64 ^ tokens.len() as u64;
    for &t in tokens {
        x ^= t as u64;
        x = x.wrapping_mul(0x0000_0100_0000_01b3);
    }
    x.max(1)
}

/// Per example, `max_len × H` f16 values in one memory-mapped file (sparse: only filled slots
/// take disk), and one u64 per slot that names the tokens it holds (0 = empty). A slot's states
/// are flushed before its index entry, so an interrupted run leaves no half-written slot marked
/// full. One training run at a time per cache directory; several [`fill_cache`] processes with
/// disjoint shards may share one (they write disjoint slots of the shared mappings).
pub struct HiddenCache {
    dir: PathBuf,
    meta: CacheMeta,
    states: MmapMut,
    index: MmapMut,
}

fn map_file(path: &Path, bytes: u64, fresh: bool) -> Result<MmapMut, TrainError> {
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(fresh).open(path).map_err(io(path))?;
    f.set_len(bytes).map_err(io(path))?;
    // SAFETY: the file is this cache's own, sized above. Only `open` resizes it, under the
    // directory's lock, and only to grow it (a fresh cache is only made when none was usable,
    // i.e. no other process has it mapped); one training run uses a directory at a time.
    unsafe { MmapMut::map_mut(&f) }.map_err(io(path))
}

impl HiddenCache {
    /// Opens (or creates) the cache in `dir` for `meta`. A directory made for another layout,
    /// key or size is emptied and rebuilt, never read; one made for the same but fewer slots
    /// grows (the new slots empty) and keeps what it holds.
    pub fn open(dir: &Path, mut meta: CacheMeta) -> Result<Self, TrainError> {
        let states_bytes = |m: &CacheMeta| {
            Self::slot_elems(m)?.checked_mul(2).and_then(|b| b.checked_mul(m.slots)).map(|b| b as u64).ok_or_else(|| {
                TrainError::Config(format!("hidden-state cache: {} slots of {} × {} overflow", m.slots, m.max_len, m.hidden_size))
            })
        };
        states_bytes(&meta)?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // Filling processes may open one cache together (`fill_cache` shards); the lock makes
        // one of them create or grow it and the others find it made.
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let meta_path = dir.join("meta.json");
        let old: Option<CacheMeta> = std::fs::read_to_string(&meta_path).ok().and_then(|t| serde_json::from_str(&t).ok());
        let size = |name: &str| std::fs::metadata(dir.join(name)).map(|m| m.len()).ok();
        let reusable = old.as_ref().filter(|o| {
            o.serves(&meta) && states_bytes(o).ok() == size("states.f16") && size("index.u64") == Some(o.slots as u64 * 8)
        });
        let fresh = reusable.is_none();
        if let Some(o) = reusable {
            meta.slots = meta.slots.max(o.slots);
        } else if old.is_some() {
            eprintln!("hidden-state cache {}: made for other data or another model, or incomplete; rebuilding it", dir.display());
        }
        let changed = old.as_ref() != Some(&meta);
        if changed {
            // The meta is written last, after both files were reset to empty or grown.
            let _ = std::fs::remove_file(&meta_path);
        }
        let states = map_file(&dir.join("states.f16"), states_bytes(&meta)?, fresh)?;
        let index = map_file(&dir.join("index.u64"), meta.slots as u64 * 8, fresh)?;
        if changed {
            std::fs::write(&meta_path, serde_json::to_string_pretty(&meta).expect("meta serializes")).map_err(io(&meta_path))?;
        }
        Ok(Self { dir: dir.to_path_buf(), meta, states, index })
    }

    fn slot_elems(meta: &CacheMeta) -> Result<usize, TrainError> {
        meta.max_len
            .checked_mul(meta.hidden_size)
            .ok_or_else(|| TrainError::Config(format!("hidden-state cache: {} × {} overflows", meta.max_len, meta.hidden_size)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &CacheMeta {
        &self.meta
    }

    /// Bytes the cache takes once every slot is filled.
    pub fn full_bytes(&self) -> u64 {
        self.states.len() as u64
    }

    /// Slots that hold states.
    pub fn filled(&self) -> usize {
        self.filled_below(self.meta.slots)
    }

    /// Slots among the first `n` that hold states.
    fn filled_below(&self, n: usize) -> usize {
        (0..n.min(self.meta.slots)).filter(|&s| self.entry(s) != 0).count()
    }

    /// The digest of the tokens slot `slot` holds (None: empty or out of range).
    fn get_digest(&self, slot: usize) -> Option<u64> {
        (slot < self.meta.slots).then(|| self.entry(slot)).filter(|&d| d != 0)
    }

    fn entry(&self, slot: usize) -> u64 {
        u64::from_le_bytes(self.index[slot * 8..slot * 8 + 8].try_into().expect("8 bytes"))
    }

    fn span(&self, slot: usize, len: usize) -> std::ops::Range<usize> {
        let start = slot * self.meta.max_len * self.meta.hidden_size * 2;
        start..start + len * self.meta.hidden_size * 2
    }

    /// The states [len × H] (row-major, as f32) of example `slot`, if the slot holds `tokens`.
    pub fn get(&self, slot: usize, tokens: &[u32]) -> Option<Vec<f32>> {
        if slot >= self.meta.slots || tokens.len() > self.meta.max_len || self.entry(slot) != tokens_digest(tokens) {
            return None;
        }
        let bytes = &self.states[self.span(slot, tokens.len())];
        Some(bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect())
    }

    /// Stores `states` [len × H] for example `slot` holding `tokens`.
    pub fn put(&mut self, slot: usize, tokens: &[u32], states: &[f32]) -> Result<(), TrainError> {
        let h = self.meta.hidden_size;
        if slot >= self.meta.slots || tokens.len() > self.meta.max_len || states.len() != tokens.len() * h {
            return Err(TrainError::Config(format!(
                "hidden-state cache: slot {slot} of {}, {} tokens (max {}), {} values (want {})",
                self.meta.slots,
                tokens.len(),
                self.meta.max_len,
                states.len(),
                tokens.len() * h
            )));
        }
        let span = self.span(slot, tokens.len());
        for (dst, &x) in self.states[span.clone()].chunks_exact_mut(2).zip(states) {
            dst.copy_from_slice(&half::f16::from_f32(x).to_le_bytes());
        }
        let path = self.dir.join("states.f16");
        self.states.flush_range(span.start, span.len()).map_err(io(&path))?;
        self.index[slot * 8..slot * 8 + 8].copy_from_slice(&tokens_digest(tokens).to_le_bytes());
        let path = self.dir.join("index.u64");
        self.index.flush_range(slot * 8, 8).map_err(io(&path))
    }
}

/// The hidden-state caches of a training set made of several data sources, one after another
/// (`train --data A B`): training slot s is slot s − start of the source that holds it, in that
/// source's own cache. Each source keeps its own content-addressed cache, so training on a new
/// mix of sources computes only the states of a source never seen before.
pub struct HiddenCaches {
    /// Each source's cache and the number of training examples it gives, in training order.
    parts: Vec<(HiddenCache, usize)>,
}

impl HiddenCaches {
    /// `parts`: each source's cache and its example count, in the order the training set
    /// concatenates them. A count larger than its cache's slots, or caches of different widths or
    /// lengths, are refused.
    pub fn new(parts: Vec<(HiddenCache, usize)>) -> Result<Self, TrainError> {
        let Some(first) = parts.first().map(|(c, _)| &c.meta) else {
            return Ok(Self { parts });
        };
        for (c, n) in &parts {
            if *n > c.meta.slots {
                return Err(TrainError::Config(format!("hidden-state cache {}: {n} examples for {} slots", c.dir.display(), c.meta.slots)));
            }
            if (c.meta.hidden_size, c.meta.max_len) != (first.hidden_size, first.max_len) {
                return Err(TrainError::Config(format!(
                    "hidden-state caches of one training set differ: {} × {} against {} × {}",
                    c.meta.max_len, c.meta.hidden_size, first.max_len, first.hidden_size
                )));
            }
        }
        Ok(Self { parts })
    }

    /// The training slots covered: the sum of the sources' example counts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|(_, n)| n).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The source cache and its own slot for training slot `slot`.
    fn locate(&self, mut slot: usize) -> Option<(usize, usize)> {
        for (i, (_, n)) in self.parts.iter().enumerate() {
            if slot < *n {
                return Some((i, slot));
            }
            slot -= n;
        }
        None
    }

    /// Training slots that hold states.
    pub fn filled(&self) -> usize {
        self.parts.iter().map(|(c, n)| c.filled_below(*n)).sum()
    }

    fn get_digest(&self, slot: usize) -> Option<u64> {
        self.locate(slot).and_then(|(i, s)| self.parts[i].0.get_digest(s))
    }

    /// The states of training slot `slot`, if it holds `tokens` (see [`HiddenCache::get`]).
    pub fn get(&self, slot: usize, tokens: &[u32]) -> Option<Vec<f32>> {
        self.locate(slot).and_then(|(i, s)| self.parts[i].0.get(s, tokens))
    }

    /// Stores the states of training slot `slot` (see [`HiddenCache::put`]).
    pub fn put(&mut self, slot: usize, tokens: &[u32], states: &[f32]) -> Result<(), TrainError> {
        let (i, s) = self
            .locate(slot)
            .ok_or_else(|| TrainError::Config(format!("hidden-state caches: slot {slot} of {} training examples", self.len())))?;
        self.parts[i].0.put(s, tokens, states)
    }
}

/// One source: every slot of its cache is a training slot.
impl From<HiddenCache> for HiddenCaches {
    fn from(cache: HiddenCache) -> Self {
        let n = cache.meta.slots;
        Self { parts: vec![(cache, n)] }
    }
}

/// Rounds to f16 and back: every training state goes through it (see the module docs).
fn round_f16(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = half::f16::from_f32(*x).to_f32());
}

/// Post-norm hidden states of the frozen LLM after each of `layers` (see
/// [`Llama::forward_hidden_layers`]; the LLM's layer count is its own output) for each of `rows`,
/// [len × (layers × H)] per row, the layers of a token side by side in the order given,
/// f16-rounded. One forward over the right-padded rows; nothing is kept in the KV cache.
pub fn live_states<B: KernelBackend>(llm: &Llama<B>, rows: &[&[u32]], layers: &[usize]) -> Vec<Vec<f32>> {
    if rows.is_empty() {
        return vec![];
    }
    let device = llm.embed.weight.device();
    let h = llm.config().hidden_size * layers.len();
    let owned: Vec<Vec<u32>> = rows.iter().map(|r| r.to_vec()).collect();
    let (b, n) = (owned.len(), owned.iter().map(Vec::len).max().unwrap_or(1).max(1));
    let mut cache = llm.new_cache(b, n, &device);
    let states = llm.forward_hidden_layers(&BlockInput::prefill(&owned, &vec![0; b], &device), &mut cache, layers);
    let hidden: Tensor<B, 3> = Tensor::cat(states, 2);
    cache.discard_pending();
    let host = hidden.into_data().convert::<f32>().into_vec::<f32>().expect("f32");
    owned
        .iter()
        .enumerate()
        .map(|(r, row)| {
            let mut v = host[r * n * h..(r * n + row.len()) * h].to_vec();
            round_f16(&mut v);
            v
        })
        .collect()
}

/// The states of `examples` (training-set indices `slots`), read from `cache` where it has them;
/// the rest come from one live forward over just those examples and are stored. `layers` are
/// the cache's (see [`live_states`]).
pub fn hidden_states<B: KernelBackend>(
    llm: &Llama<B>,
    examples: &[&Example],
    slots: &[usize],
    cache: Option<&mut HiddenCaches>,
    layers: &[usize],
) -> Result<Vec<Vec<f32>>, TrainError> {
    let Some(cache) = cache else {
        return Ok(live_states(llm, &examples.iter().map(|e| e.tokens.as_slice()).collect::<Vec<_>>(), layers));
    };
    let mut out: Vec<Option<Vec<f32>>> = examples.iter().zip(slots).map(|(e, &s)| cache.get(s, &e.tokens)).collect();
    let missing: Vec<usize> = (0..examples.len()).filter(|&i| out[i].is_none()).collect();
    let computed = live_states(llm, &missing.iter().map(|&i| examples[i].tokens.as_slice()).collect::<Vec<_>>(), layers);
    for (&i, states) in missing.iter().zip(computed) {
        cache.put(slots[i], &examples[i].tokens, &states)?;
        out[i] = Some(states);
    }
    Ok(out.into_iter().map(|s| s.expect("filled above")).collect())
}

/// Fills `cache` ahead of training: the slots of `examples` (slot = index) that are `shard.0`
/// modulo `shard.1` and do not yet hold their tokens, longest first, in batches of up to
/// `batch_tokens` padded tokens. Sorting by length is what makes this cheaper than the lazy fill
/// of the first epoch, whose random micro-batches are padded to their longest member (about
/// 1.8x the tokens on distilled answers). Several processes may fill one cache, each with its
/// own shard: the slots are disjoint. `progress(done, total, tokens)` runs after each batch.
/// Returns the number of slots filled.
pub fn fill_cache<B: KernelBackend>(
    llm: &Llama<B>,
    examples: &[Example],
    cache: &mut HiddenCaches,
    shard: (usize, usize),
    batch_tokens: usize,
    layers: &[usize],
    progress: &mut dyn FnMut(usize, usize, usize),
) -> Result<usize, TrainError> {
    let (k, n) = shard;
    if n == 0 || k >= n {
        return Err(TrainError::Config(format!("cache shard {k}/{n}: want K < N")));
    }
    let mut todo: Vec<usize> =
        (0..examples.len()).filter(|&s| s % n == k && cache.get_digest(s) != Some(tokens_digest(&examples[s].tokens))).collect();
    todo.sort_by_key(|&s| std::cmp::Reverse(examples[s].tokens.len()));
    let total = todo.len();
    let (mut done, mut tokens) = (0, 0);
    let mut rest = &todo[..];
    while !rest.is_empty() {
        // Longest first: the first row sets the padded length of the batch.
        let longest = examples[rest[0]].tokens.len().max(1);
        let take = (batch_tokens / longest).clamp(1, rest.len());
        let (batch, tail) = rest.split_at(take);
        let rows: Vec<&[u32]> = batch.iter().map(|&s| examples[s].tokens.as_slice()).collect();
        for (&s, states) in batch.iter().zip(live_states(llm, &rows, layers)) {
            cache.put(s, &examples[s].tokens, &states)?;
        }
        done += batch.len();
        tokens += rows.iter().map(|r| r.len()).sum::<usize>();
        progress(done, total, tokens);
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str) -> CacheMeta {
        CacheMeta::new(key.into(), 3, 4, 5)
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("redrafter-hidden-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn slots_round_trip_in_f16_and_survive_reopening() {
        let dir = temp("roundtrip");
        let states = vec![0.1f32, -2.5, 3.0, 1e-3, 7.25, -0.333];
        {
            let mut c = HiddenCache::open(&dir, meta("k")).unwrap();
            assert_eq!(c.filled(), 0);
            assert!(c.get(2, &[1, 2]).is_none());
            c.put(2, &[1, 2], &states).unwrap();
            assert_eq!(c.filled(), 1);
        }
        let c = HiddenCache::open(&dir, meta("k")).unwrap();
        let mut want = states.clone();
        round_f16(&mut want);
        assert_eq!(c.get(2, &[1, 2]).unwrap(), want);
        assert!(c.get(2, &[1, 3]).is_none(), "other tokens in the slot are a miss");
        assert!(c.get(1, &[1, 2]).is_none());
        // Another key empties the directory instead of serving its states.
        let c = HiddenCache::open(&dir, meta("other")).unwrap();
        assert_eq!(c.filled(), 0);
        assert!(c.get(2, &[1, 2]).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_puts_and_sizes_are_errors() {
        let dir = temp("bad");
        let mut c = HiddenCache::open(&dir, meta("k")).unwrap();
        assert!(c.put(5, &[1], &[0.0; 3]).is_err(), "slot out of range");
        assert!(c.put(0, &[1, 2, 3, 4, 5], &[0.0; 15]).is_err(), "longer than max_len");
        assert!(c.put(0, &[1], &[0.0; 2]).is_err(), "wrong value count");
        let huge = CacheMeta { max_len: usize::MAX / 2, ..meta("k") };
        assert!(HiddenCache::open(&dir, huge).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_follow_the_model_sizes_and_data() {
        let a = cache_key("m", 3, 256, "d");
        assert_eq!(a, cache_key("m", 3, 256, "d"));
        for other in [cache_key("n", 3, 256, "d"), cache_key("m", 4, 256, "d"), cache_key("m", 3, 128, "d"), cache_key("m", 3, 256, "e")] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn a_cache_grows_and_keeps_its_slots() {
        let dir = temp("grow");
        let states = vec![0.5f32, 1.5, -2.0];
        HiddenCache::open(&dir, meta("k")).unwrap().put(4, &[7], &states).unwrap();
        // More examples (a data file that grew): the old slot survives, the new ones are empty.
        let mut c = HiddenCache::open(&dir, CacheMeta { slots: 9, ..meta("k") }).unwrap();
        assert_eq!((c.meta().slots, c.filled()), (9, 1));
        assert_eq!(c.get(4, &[7]).unwrap(), states);
        c.put(8, &[1, 2], &[0.25; 6]).unwrap();
        // Fewer examples: nothing is dropped.
        let c = HiddenCache::open(&dir, CacheMeta { slots: 2, ..meta("k") }).unwrap();
        assert_eq!((c.meta().slots, c.filled()), (9, 2));
        assert_eq!(c.get(8, &[1, 2]).unwrap(), vec![0.25; 6]);
        // Another max_len is another layout: rebuilt.
        let c = HiddenCache::open(&dir, CacheMeta { max_len: 8, ..meta("k") }).unwrap();
        assert_eq!((c.meta().slots, c.filled()), (5, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn several_sources_share_one_slot_space() {
        let (da, db) = (temp("src-a"), temp("src-b"));
        // Source A gives 2 of its cache's 5 slots, source B all 5 of its own: training slots 0..7.
        let a = HiddenCache::open(&da, meta("a")).unwrap();
        let b = HiddenCache::open(&db, meta("b")).unwrap();
        let mut c = HiddenCaches::new(vec![(a, 2), (b, 5)]).unwrap();
        assert_eq!((c.len(), c.filled()), (7, 0));
        c.put(1, &[4], &[1.0, 2.0, 3.0]).unwrap();
        c.put(2, &[5], &[4.0, 5.0, 6.0]).unwrap();
        c.put(6, &[6], &[7.0, 8.0, 9.0]).unwrap();
        assert!(c.put(7, &[6], &[0.0; 3]).is_err(), "past the last source");
        assert_eq!(c.filled(), 3);
        assert_eq!(c.get(2, &[5]).unwrap(), vec![4.0, 5.0, 6.0]);
        assert!(c.get(2, &[4]).is_none());
        drop(c);
        // Each source's own cache holds its slots under its own numbering.
        let a = HiddenCache::open(&da, meta("a")).unwrap();
        let b = HiddenCache::open(&db, meta("b")).unwrap();
        assert_eq!(a.get(1, &[4]).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(b.get(0, &[5]).unwrap(), vec![4.0, 5.0, 6.0]);
        assert_eq!(b.get(4, &[6]).unwrap(), vec![7.0, 8.0, 9.0]);
        // The other order is another slot space over the same caches.
        let c = HiddenCaches::new(vec![(b, 5), (a, 2)]).unwrap();
        assert_eq!(c.get(6, &[4]).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(c.filled(), 3);
        let a = HiddenCache::open(&da, meta("a")).unwrap();
        assert!(HiddenCaches::new(vec![(a, 6)]).is_err(), "more examples than slots");
        let a = HiddenCache::open(&da, meta("a")).unwrap();
        let wide = HiddenCache::open(&temp("src-wide"), CacheMeta::new("w".into(), 4, 4, 5)).unwrap();
        assert!(HiddenCaches::new(vec![(a, 2), (wide, 1)]).is_err(), "another width");
        for d in [da, db, temp("src-wide")] {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}
