//! The child side: one backend at one thread count measures every cell of the plan that is not
//! yet recorded, and emits one [`Record`] per (cell, run) as it finishes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use redrafter::backends::BackendTask;
use redrafter::{Autoregressive, BeamConfig, DraftSource, Drafter, GenerationConfig, Generator, KernelBackend, LookupFirst, PromptLookup, ReDrafter, Strategy};
use redrafter_io::Message;
use serde::{Deserialize, Serialize};

use super::BenchError;
use super::fingerprint::{peak_rss_mb, reset_peak_rss};
use super::plan::{CellKey, Plan};

/// A line of `runs.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Backend(BackendRecord),
    Run(RunRecord),
}

/// Whether a backend started, and what it cost to get it ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendRecord {
    pub settings: String,
    pub backend: String,
    pub threads: usize,
    /// `ok` or `skipped`.
    pub status: String,
    pub reason: Option<String>,
    /// Per weight format: load seconds, warm-up seconds (first calls: kernel compilation,
    /// autotuning, first-touch allocations; excluded from every cell), and the formats the
    /// model's tensors ended up in.
    pub weights: Vec<WeightsReady>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightsReady {
    pub weights: String,
    pub formats: String,
    pub load_seconds: f64,
    pub warmup_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub settings: String,
    pub key: CellKey,
    pub run: usize,
    pub metrics: RunMetrics,
}

/// One pass of one cell over every prompt of the suite (in batches of the cell's size).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMetrics {
    pub prompts: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// Wall time of the generate calls (prefill, decode and the loop's host work).
    pub wall_seconds: f64,
    pub steps: usize,
    pub row_steps: usize,
    /// Tokens the decode steps committed (τ = committed / row_steps).
    pub committed: usize,
    /// Per draft position: accepted over offered, pooled over the calls' counts.
    pub acceptance_by_position: Vec<f64>,
    /// Draft tokens offered for verification, over all row-steps (L − 1 each without an
    /// adaptive length).
    #[serde(default)]
    pub offered: usize,
    /// Copy first (`LookupFirst`): row-steps whose first beam was a copy of the context, and
    /// their acceptance per draft position (pooled as above). 0 and empty for other sources.
    #[serde(default)]
    pub copied_row_steps: usize,
    #[serde(default)]
    pub copy_acceptance_by_position: Vec<f64>,
    pub packed_tokens: usize,
    pub grid_tokens: usize,
    pub phase_seconds: BTreeMap<String, f64>,
    /// Per generate call: time to the first token (prefill) and mean time per later token.
    pub ttft_seconds: Vec<f64>,
    pub tpot_seconds: Vec<f64>,
    /// Per category: (committed, row_steps).
    pub by_category: BTreeMap<String, (usize, usize)>,
    /// Greedy: rows whose tokens differ from autoregressive decoding's. `None` when sampling.
    pub mismatches: Option<usize>,
    /// Peak resident memory during this run, MB (the process's, weights included; on systems
    /// without a peak reset, since the process started).
    pub peak_rss_mb: Option<f64>,
}

/// The child's work; [`redrafter::backends::run_on`] instantiates it for its backend.
pub struct Child<'a> {
    pub plan: &'a Plan,
    pub settings: String,
    pub backend: String,
    pub threads: usize,
    /// `CellKey::id()` + `#run` of what is already recorded.
    pub done: HashSet<String>,
    pub emit: &'a mut dyn FnMut(Record),
}

pub fn done_id(key: &CellKey, run: usize) -> String {
    format!("{}#{run}", key.id())
}

impl BackendTask for Child<'_> {
    type Output = Result<(), BenchError>;

    fn run<B: KernelBackend>(self, device: B::Device) -> Self::Output {
        let Child { plan, settings, backend, threads, done, emit } = self;
        let merr = |e: &dyn std::fmt::Display| BenchError::Measure(e.to_string());
        let cells = plan.cells(&backend, threads);
        let mut ready = vec![];
        for w in &plan.weights {
            let todo: Vec<&CellKey> = cells.iter().filter(|c| &c.weights == w).collect();
            if todo.iter().all(|k| (0..plan.runs).all(|r| done.contains(&done_id(k, r)))) {
                continue;
            }
            let t0 = Instant::now();
            let m = redrafter_llama::load_with::<B>(&plan.model, &device, w.parse().map_err(|e: String| BenchError::Option(e))?).map_err(|e| merr(&e))?;
            let load_seconds = t0.elapsed().as_secs_f64();
            let prompts = encode(plan, &m.tokenizer)?;
            let mut drafters: HashMap<String, Option<Drafter<B>>> = HashMap::new();
            for d in &plan.drafters {
                let drafter = match &d.dir {
                    Some(dir) => {
                        let load = || -> Result<Drafter<B>, redrafter::DrafterError> {
                            let mut dr = redrafter::load_drafter::<B>(dir, &device)?;
                            dr.check_compatible(m.model.config())?;
                            dr.bind(&m.model)?;
                            Ok(dr)
                        };
                        Some(load().map_err(|e| merr(&format!("drafter {}: {e}", d.name)))?)
                    }
                    None => None,
                };
                drafters.insert(d.name.clone(), drafter);
            }
            let g = Generator::new(&m.model, None);
            // Warm-up: every strategy once on a short generation, so that kernel compilation and
            // autotuning (wgpu, CUDA) are not counted in the first cell.
            let t0 = Instant::now();
            let warm = GenerationConfig { max_new_tokens: 4, ..Default::default() };
            let first = [prompts[0].0.clone()];
            g.generate(&mut Autoregressive, &first, &warm, None).map_err(|e| merr(&e))?;
            for d in &plan.drafters {
                for &(width, length) in &plan.grids {
                    for &p in &plan.thresholds {
                        let mut s = strategy(drafters[&d.name].as_ref(), d.lookup_first, width, length, p)?;
                        g.generate(s.as_mut(), &first, &warm, None).map_err(|e| merr(&e))?;
                    }
                }
            }
            ready.push(WeightsReady { weights: w.clone(), formats: m.model.weight_formats(), load_seconds, warmup_seconds: t0.elapsed().as_secs_f64() });
            emit(Record::Backend(BackendRecord {
                settings: settings.clone(),
                backend: backend.clone(),
                threads,
                status: "ok".into(),
                reason: None,
                weights: ready.clone(),
            }));
            // Autoregressive outputs per (batch, temperature), to check greedy ReDrafter against.
            let mut reference: HashMap<String, Vec<Vec<u32>>> = HashMap::new();
            for run in 0..plan.runs {
                for &key in &todo {
                    let baseline_id = key.baseline().id();
                    let greedy = key.temperature < redrafter::sampling::GREEDY_BELOW;
                    let recorded = done.contains(&done_id(key, run));
                    // A recorded cell is skipped, except an autoregressive one recorded before a
                    // restart whose greedy ReDrafter cells still need its tokens: decoded again,
                    // not recorded again. (Each baseline comes before its ReDrafter cells.)
                    let needed_as_reference = key.is_autoregressive()
                        && greedy
                        && !reference.contains_key(&baseline_id)
                        && todo.iter().any(|k| !k.is_autoregressive() && k.baseline().id() == baseline_id && !done.contains(&done_id(k, run)));
                    if recorded && !needed_as_reference {
                        continue;
                    }
                    let cfg = config(plan, key)?;
                    let lookup_first = key.drafter.as_ref().and_then(|d| plan.drafters.iter().find(|s| &s.name == d)).and_then(|s| s.lookup_first);
                    let mut make = || strategy(key.drafter.as_ref().and_then(|d| drafters[d].as_ref()), lookup_first, key.width, key.length, key.threshold);
                    let (mut metrics, tokens) = measure(&g, &prompts, key.batch, &cfg, &mut make)?;
                    if key.is_autoregressive() {
                        reference.insert(baseline_id, tokens);
                        if recorded {
                            continue;
                        }
                    } else if greedy {
                        let ar = reference.get(&baseline_id).ok_or_else(|| BenchError::Measure(format!("no autoregressive tokens for {baseline_id}")))?;
                        metrics.mismatches = Some(tokens.iter().zip(ar).filter(|(a, b)| a != b).count());
                    }
                    emit(Record::Run(RunRecord { settings: settings.clone(), key: key.clone(), run, metrics }));
                }
            }
        }
        Ok(())
    }
}

/// Each prompt as token ids (through the chat template unless raw or the model has none) and
/// its category.
fn encode(plan: &Plan, tok: &redrafter_io::tokenizer::TextTokenizer) -> Result<Vec<(Vec<u32>, String)>, BenchError> {
    plan.prompts
        .iter()
        .map(|p| {
            let text = match (&tok.chat_template, p.raw) {
                (Some(t), false) => t.render(&[Message::new("user", &p.text)], true).map_err(|e| BenchError::Measure(e.to_string()))?,
                _ => p.text.clone(),
            };
            Ok((tok.encode(&text).map_err(|e| BenchError::Measure(e.to_string()))?, p.category.clone()))
        })
        .collect()
}

fn config(plan: &Plan, key: &CellKey) -> Result<GenerationConfig, BenchError> {
    Ok(GenerationConfig {
        max_new_tokens: plan.new_tokens,
        sampling: redrafter::SamplingConfig {
            temperature: key.temperature,
            top_k: plan.top_k,
            top_p: plan.top_p,
            seed: plan.seed,
            acceptance: plan.acceptance.parse().map_err(BenchError::Option)?,
        },
        ..Default::default()
    })
}

fn strategy<B: KernelBackend>(
    drafter: Option<&Drafter<B>>,
    lookup_first: Option<(usize, usize)>,
    width: usize,
    length: usize,
    threshold: f32,
) -> Result<Box<dyn Strategy<B>>, BenchError> {
    if width == 0 {
        return Ok(Box::new(Autoregressive));
    }
    let opt = |e: redrafter::DecodeError| BenchError::Option(e.to_string());
    let source: Box<dyn DraftSource<B>> = match (drafter, lookup_first) {
        (Some(d), None) => Box::new(d.clone()),
        (Some(d), Some((min_ngram, max_ngram))) => Box::new(LookupFirst::new(d.clone(), PromptLookup { max_ngram, min_ngram }).map_err(opt)?),
        (None, _) => Box::new(PromptLookup::default()),
    };
    Ok(Box::new(ReDrafter::new(source, BeamConfig { width, length }).and_then(|r| r.draft_threshold(threshold)).map_err(opt)?))
}

/// One pass over the prompts in batches of `batch` rows (the last batch may be smaller), each
/// batch with a fresh strategy. Returns the metrics and every row's tokens in prompt order.
fn measure<B: KernelBackend>(
    g: &Generator<'_, B>,
    prompts: &[(Vec<u32>, String)],
    batch: usize,
    cfg: &GenerationConfig,
    make: &mut dyn FnMut() -> Result<Box<dyn Strategy<B>>, BenchError>,
) -> Result<(RunMetrics, Vec<Vec<u32>>), BenchError> {
    // The cell's own peak (weights and caches included), not the child's since it started.
    reset_peak_rss();
    let mut m = RunMetrics { prompts: prompts.len(), ..Default::default() };
    let mut tokens = vec![];
    // Per draft position: (accepted, offered) row-steps over the calls.
    let mut pooled: Vec<(usize, usize)> = vec![];
    let mut pooled_copies: Vec<(usize, usize)> = vec![];
    for chunk in prompts.chunks(batch) {
        let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.0.clone()).collect();
        let mut s = make()?;
        let t0 = Instant::now();
        let out = g.generate(s.as_mut(), &ids, cfg, None).map_err(|e| BenchError::Measure(e.to_string()))?;
        m.wall_seconds += t0.elapsed().as_secs_f64();
        let st = &out.stats;
        m.prompt_tokens += st.prompt_tokens;
        m.new_tokens += st.new_tokens;
        m.prefill_seconds += st.prefill_seconds;
        m.decode_seconds += st.decode_seconds;
        m.steps += st.steps;
        m.row_steps += st.row_steps;
        m.committed += st.committed_in_steps;
        m.offered += st.offered_by_position.iter().sum::<usize>();
        m.packed_tokens += st.packed_tokens;
        m.grid_tokens += st.grid_tokens;
        for (name, s) in &st.phase_seconds {
            *m.phase_seconds.entry(name.clone()).or_default() += s;
        }
        pool(&mut pooled, &st.accepted_by_position, &st.offered_by_position);
        pool(&mut pooled_copies, &st.copy_accepted_by_position, &st.copy_offered_by_position);
        m.copied_row_steps += st.copied_row_steps;
        m.ttft_seconds.push(st.prefill_seconds);
        let longest = out.rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
        if longest > 1 {
            m.tpot_seconds.push(st.decode_seconds / (longest - 1) as f64);
        }
        // τ per category: one call's committed tokens and row-steps, spread over its rows'
        // categories by row count (exact at batch 1).
        for (row, p) in out.rows.iter().zip(chunk) {
            let share = 1.0 / out.rows.len() as f64;
            let e = m.by_category.entry(p.1.clone()).or_default();
            e.0 += (st.committed_in_steps as f64 * share).round() as usize;
            e.1 += (st.row_steps as f64 * share).round() as usize;
            tokens.push(row.tokens.clone());
        }
    }
    let ratios = |p: &[(usize, usize)]| p.iter().map(|&(a, o)| if o > 0 { a as f64 / o as f64 } else { 0.0 }).collect();
    m.acceptance_by_position = ratios(&pooled);
    m.copy_acceptance_by_position = ratios(&pooled_copies);
    m.peak_rss_mb = peak_rss_mb();
    Ok((m, tokens))
}

/// Adds one call's (accepted, offered) row-steps per draft position to `pooled`.
fn pool(pooled: &mut Vec<(usize, usize)>, accepted: &[usize], offered: &[usize]) {
    for (k, (&a, &o)) in accepted.iter().zip(offered).enumerate() {
        if pooled.len() <= k {
            pooled.push((0, 0));
        }
        pooled[k].0 += a;
        pooled[k].1 += o;
    }
}
