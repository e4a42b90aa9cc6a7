//! Records → the report: medians and spread over runs, speedups against the autoregressive cell
//! of the same backend, threads, weights, batch and temperature; written as JSON, CSV, Markdown
//! and SVG.

use std::collections::BTreeMap;
use std::path::Path;

use redrafter_train::plot::{Series, line_chart};

use super::bars::bar_chart;
use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use super::measure::{BackendRecord, Record, RunRecord};
use super::plan::{CellKey, Plan};
use super::{BenchError, SCHEMA_VERSION};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub fingerprint: Fingerprint,
    pub settings: Settings,
    pub backends: Vec<BackendRecord>,
    pub cells: Vec<Cell>,
}

/// The plan, less the prompt texts (their count and suite name stay).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub id: String,
    pub suite: String,
    pub prompts: usize,
    pub new_tokens: usize,
    pub model: String,
    pub weights: Vec<String>,
    pub backends: Vec<String>,
    pub threads: Vec<usize>,
    pub drafters: Vec<(String, String)>,
    pub grids: Vec<(usize, usize)>,
    pub batches: Vec<usize>,
    pub temperatures: Vec<f32>,
    pub top_k: usize,
    pub top_p: f32,
    pub acceptance: String,
    pub seed: u64,
    pub runs: usize,
    /// (peer, its Python) of the baseline cells.
    #[serde(default)]
    pub peers: Vec<(String, String)>,
}

/// Median and spread over runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    #[serde(deserialize_with = "nullable")]
    pub median: f64,
    #[serde(deserialize_with = "nullable")]
    pub min: f64,
    #[serde(deserialize_with = "nullable")]
    pub max: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    #[serde(deserialize_with = "nullable")]
    pub p50: f64,
    #[serde(deserialize_with = "nullable")]
    pub p90: f64,
    #[serde(deserialize_with = "nullable")]
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    #[serde(flatten)]
    pub key: CellKey,
    pub runs: usize,
    pub prompts: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Committed tokens per second of decode steps (prefill excluded).
    pub decode_tokens_per_second: Spread,
    /// New tokens per second of wall time (prefill, decode and host work).
    pub tokens_per_second: Spread,
    pub prefill_tokens_per_second: Spread,
    /// Wall-time tok/s over the autoregressive cell's (medians); `None` for autoregressive cells
    /// or when the baseline is missing.
    pub speedup: Option<f64>,
    pub decode_speedup: Option<f64>,
    /// Tokens committed per row-step, the bonus token included (1 for autoregressive decoding).
    #[serde(deserialize_with = "nullable")]
    pub tau: f64,
    pub acceptance_by_position: Vec<f64>,
    /// Draft tokens offered for verification per row-step (L − 1 unless the draft length is
    /// adaptive); `None` for autoregressive cells.
    #[serde(default)]
    pub drafted_per_step: Option<f64>,
    /// Copy first: the share of row-steps whose first beam was a copy, and their acceptance by
    /// position (first run); `None` and empty for other strategies and for older reports.
    #[serde(default)]
    pub copied_share: Option<f64>,
    #[serde(default)]
    pub copy_acceptance_by_position: Vec<f64>,
    /// Packed tree tokens / W·L grid tokens.
    pub tree_compression: Option<f64>,
    #[serde(deserialize_with = "nullable")]
    pub ms_per_step: f64,
    pub phase_ms_per_step: BTreeMap<String, f64>,
    /// ms per step over the autoregressive cell's: the τ at which this cell breaks even.
    pub break_even_tau: Option<f64>,
    pub ttft_ms: Percentiles,
    pub tpot_ms: Percentiles,
    pub peak_rss_mb: Option<f64>,
    /// Greedy: outputs that differ from autoregressive decoding's (most over runs); `None` when sampling.
    pub mismatches: Option<usize>,
    pub tau_by_category: BTreeMap<String, f64>,
}

/// The report of every record made under `plan`'s settings.
pub fn build(plan: &Plan, settings_id: &str, records: &[Record], fingerprint: Fingerprint) -> Report {
    let mut backends: Vec<BackendRecord> = vec![];
    let mut runs: BTreeMap<String, (CellKey, Vec<&RunRecord>)> = BTreeMap::new();
    for r in records {
        match r {
            Record::Backend(b)
                if b.settings == settings_id
                    && (plan.backends.contains(&b.backend) || plan.peers.iter().any(|p| p.name == b.backend))
                    && plan.threads.contains(&b.threads) =>
            {
                // The latest record of a backend and thread count wins (a resumed run adds formats).
                match backends.iter_mut().find(|x| x.backend == b.backend && x.threads == b.threads) {
                    Some(x) if b.status == "ok" || x.status != "ok" => {
                        let mut merged = b.clone();
                        for w in &x.weights {
                            if !merged.weights.iter().any(|m| m.weights == w.weights) {
                                merged.weights.push(w.clone());
                            }
                        }
                        *x = merged;
                    }
                    Some(_) => {}
                    None => backends.push(b.clone()),
                }
            }
            Record::Run(r) if r.settings == settings_id => {
                runs.entry(r.key.id()).or_insert_with(|| (r.key.clone(), vec![])).1.push(r);
            }
            _ => {}
        }
    }
    // Cells in plan order.
    let mut cells = vec![];
    for b in &plan.backends {
        for &t in &plan.threads {
            for key in plan.cells(b, t) {
                if let Some((_, rs)) = runs.get(&key.id()) {
                    cells.push(summarize(&key, rs));
                }
            }
        }
    }
    for p in &plan.peers {
        for &t in &plan.threads {
            for key in plan.peer_cells(p, t) {
                if let Some((_, rs)) = runs.get(&key.id()) {
                    cells.push(summarize(&key, rs));
                }
            }
        }
    }
    let by_id: BTreeMap<String, (f64, f64, f64)> =
        cells.iter().map(|c| (c.key.id(), (c.tokens_per_second.median, c.decode_tokens_per_second.median, c.ms_per_step))).collect();
    for c in cells.iter_mut().filter(|c| !c.key.is_autoregressive()) {
        if let Some(&(tps, dtps, ms)) = by_id.get(&c.key.baseline().id()) {
            c.speedup = Some(c.tokens_per_second.median / tps);
            c.decode_speedup = Some(c.decode_tokens_per_second.median / dtps);
            c.break_even_tau = Some(c.ms_per_step / ms);
        }
    }
    Report {
        schema: SCHEMA_VERSION.to_string(),
        fingerprint,
        settings: Settings {
            id: settings_id.to_string(),
            suite: plan.suite.clone(),
            prompts: plan.prompts.len(),
            new_tokens: plan.new_tokens,
            model: plan.model.display().to_string(),
            weights: plan.weights.clone(),
            backends: plan.backends.clone(),
            threads: plan.threads.clone(),
            drafters: plan.drafters.iter().map(|d| (d.name.clone(), describe(d))).collect(),
            grids: plan.grids.clone(),
            batches: plan.batches.clone(),
            temperatures: plan.temperatures.clone(),
            top_k: plan.top_k,
            top_p: plan.top_p,
            acceptance: plan.acceptance.clone(),
            seed: plan.seed,
            runs: plan.runs,
            peers: plan.peers.iter().map(|p| (p.name.clone(), p.python.display().to_string())).collect(),
        },
        backends,
        cells,
    }
}

/// Reads `null` (how JSON writes a NaN) back as NaN.
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: Vec<f64>) -> Spread {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Spread { median: median(v), min, max }
}

/// Nearest-rank percentiles.
pub fn percentiles(mut v: Vec<f64>) -> Percentiles {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let at = |p: f64| if v.is_empty() { f64::NAN } else { v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] };
    Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99) }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn summarize(key: &CellKey, rs: &[&RunRecord]) -> Cell {
    let first = &rs[0].metrics;
    let per_run = |f: &dyn Fn(&super::measure::RunMetrics) -> f64| spread(rs.iter().map(|r| f(&r.metrics)).collect());
    let steps: usize = rs.iter().map(|r| r.metrics.steps).sum();
    let decode: f64 = rs.iter().map(|r| r.metrics.decode_seconds).sum();
    let mut phases: BTreeMap<String, f64> = BTreeMap::new();
    for r in rs {
        for (n, s) in &r.metrics.phase_seconds {
            *phases.entry(n.clone()).or_default() += s;
        }
    }
    let mut cats: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in rs {
        for (c, &(k, n)) in &r.metrics.by_category {
            let e = cats.entry(c.clone()).or_default();
            e.0 += k;
            e.1 += n;
        }
    }
    let grid: usize = rs.iter().map(|r| r.metrics.grid_tokens).sum();
    Cell {
        key: key.clone(),
        runs: rs.len(),
        prompts: first.prompts,
        prompt_tokens: first.prompt_tokens,
        new_tokens: first.new_tokens,
        decode_tokens_per_second: per_run(&|m| ratio(m.committed as f64, m.decode_seconds)),
        tokens_per_second: per_run(&|m| ratio(m.new_tokens as f64, m.wall_seconds)),
        prefill_tokens_per_second: per_run(&|m| ratio(m.prompt_tokens as f64, m.prefill_seconds)),
        speedup: None,
        decode_speedup: None,
        tau: median(rs.iter().map(|r| ratio(r.metrics.committed as f64, r.metrics.row_steps as f64)).collect()),
        acceptance_by_position: first.acceptance_by_position.clone(),
        drafted_per_step: (!key.is_autoregressive())
            .then(|| ratio(rs.iter().map(|r| r.metrics.offered).sum::<usize>() as f64, rs.iter().map(|r| r.metrics.row_steps).sum::<usize>() as f64)),
        copied_share: (first.copied_row_steps > 0)
            .then(|| ratio(rs.iter().map(|r| r.metrics.copied_row_steps).sum::<usize>() as f64, rs.iter().map(|r| r.metrics.row_steps).sum::<usize>() as f64)),
        copy_acceptance_by_position: first.copy_acceptance_by_position.clone(),
        tree_compression: (grid > 0).then(|| rs.iter().map(|r| r.metrics.packed_tokens).sum::<usize>() as f64 / grid as f64),
        ms_per_step: 1e3 * ratio(decode, steps as f64),
        phase_ms_per_step: phases.into_iter().filter(|_| steps > 0).map(|(n, s)| (n, 1e3 * ratio(s, steps as f64))).collect(),
        break_even_tau: None,
        ttft_ms: percentiles(rs.iter().flat_map(|r| r.metrics.ttft_seconds.iter().map(|s| s * 1e3)).collect()),
        tpot_ms: percentiles(rs.iter().flat_map(|r| r.metrics.tpot_seconds.iter().map(|s| s * 1e3)).collect()),
        peak_rss_mb: rs.iter().filter_map(|r| r.metrics.peak_rss_mb).reduce(f64::max),
        mismatches: rs.iter().filter_map(|r| r.metrics.mismatches).max(),
        tau_by_category: cats.into_iter().filter(|(_, (_, n))| *n > 0).map(|(c, (k, n))| (c, ratio(k as f64, n as f64))).collect(),
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.filter(|v| v.is_finite()).map_or(String::new(), |v| format!("{v:.digits$}"))
}

pub const CSV_HEADER: &str = "backend,threads,weights,strategy,drafter,width,length,batch,temperature,runs,prompts,new_tokens,\
decode_tok_s,decode_tok_s_min,decode_tok_s_max,tok_s,prefill_tok_s,speedup,decode_speedup,tau,tree_compression,ms_per_step,\
break_even_tau,ttft_p50_ms,ttft_p90_ms,ttft_p99_ms,tpot_p50_ms,tpot_p90_ms,tpot_p99_ms,peak_rss_mb,mismatches,draft_threshold,drafted_per_step";

pub fn csv(report: &Report) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for c in &report.cells {
        let k = &c.key;
        s += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{:.2},{:.2},{:.2},{:.2},{:.1},{},{},{:.3},{},{:.2},{},{:.2},{:.2},{:.2},{:.3},{:.3},{:.3},{},{},{},{}\n",
            k.backend, k.threads, k.weights, k.strategy, k.drafter.as_deref().unwrap_or(""), k.width, k.length, k.batch, k.temperature,
            c.runs, c.prompts, c.new_tokens, c.decode_tokens_per_second.median, c.decode_tokens_per_second.min, c.decode_tokens_per_second.max,
            c.tokens_per_second.median, c.prefill_tokens_per_second.median, opt(c.speedup, 3), opt(c.decode_speedup, 3), c.tau,
            opt(c.tree_compression, 3), c.ms_per_step, opt(c.break_even_tau, 3), c.ttft_ms.p50, c.ttft_ms.p90, c.ttft_ms.p99,
            c.tpot_ms.p50, c.tpot_ms.p90, c.tpot_ms.p99, opt(c.peak_rss_mb, 0), c.mismatches.map_or(String::new(), |m| m.to_string()),
            k.threshold, opt(c.drafted_per_step, 3)
        );
    }
    s
}

/// The Markdown summary: backends, then one row per cell, then τ by category.
pub fn markdown(report: &Report) -> String {
    let mut s = String::new();
    let f = &report.fingerprint;
    s += &format!(
        "{} · {} cores ({} usable) · {} · commit {} · burn {} · cubecl {} · {}\n\n",
        f.cpu, f.logical_cores, f.usable_cores, f.os, f.git_commit, f.burn, f.cubecl, f.date
    );
    for b in &report.backends {
        match &b.reason {
            Some(why) => s += &format!("* {} ({} threads): **{}**: {}\n", b.backend, b.threads, b.status, why),
            None => {
                let w: Vec<String> = b.weights.iter().map(|w| format!("{} (load {:.1} s, warm-up {:.1} s)", w.weights, w.load_seconds, w.warmup_seconds)).collect();
                s += &format!("* {} ({} threads): ok; {}\n", b.backend, b.threads, w.join("; "));
            }
        }
    }
    s += "\n| backend | threads | weights | batch | T | strategy | decode tok/s (min–max) | tok/s | speedup | τ | drafted/step | acceptance by position | ms/step | break-even τ | TTFT p50 ms | TPOT p50/p90 ms | mismatches |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for c in &report.cells {
        let k = &c.key;
        let mut acc: Vec<String> = c.acceptance_by_position.iter().map(|a| format!("{a:.2}")).collect();
        if let Some(share) = c.copied_share {
            // Copy first: the copying rows' own acceptance after the pooled one.
            let copies: Vec<String> = c.copy_acceptance_by_position.iter().map(|a| format!("{a:.2}")).collect();
            acc.push(format!("(copies {:.0}%: {})", 100.0 * share, copies.join(" ")));
        }
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} ({:.1}–{:.1}) | {:.1} | {} | {:.2} | {} | {} | {:.1} | {} | {:.1} | {:.2}/{:.2} | {} |\n",
            k.backend, k.threads, k.weights, k.batch, k.temperature, k.label(), c.decode_tokens_per_second.median, c.decode_tokens_per_second.min,
            c.decode_tokens_per_second.max, c.tokens_per_second.median, opt(c.speedup, 2).to_string() + if c.speedup.is_some() { "x" } else { "" },
            c.tau, opt(c.drafted_per_step, 2), acc.join(" "), c.ms_per_step, opt(c.break_even_tau, 2), c.ttft_ms.p50, c.tpot_ms.p50, c.tpot_ms.p90,
            c.mismatches.map_or("–".to_string(), |m| m.to_string())
        );
    }
    let rd: Vec<&Cell> = report.cells.iter().filter(|c| !c.key.is_autoregressive()).collect();
    if let Some(first) = rd.first().filter(|c| c.tau_by_category.len() > 1) {
        let names: Vec<&String> = first.tau_by_category.keys().collect();
        s += &format!("\n| backend | weights | batch | T | strategy | τ: {} |\n", names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" | "));
        s += &format!("|---|---|---|---|---|{}\n", "---|".repeat(names.len()));
        for c in rd {
            let t: Vec<String> = names.iter().map(|n| c.tau_by_category.get(*n).map_or(String::new(), |t| format!("{t:.2}"))).collect();
            s += &format!("| {} | {} | {} | {} | {} | {} |\n", c.key.backend, c.key.weights, c.key.batch, c.key.temperature, c.key.label(), t.join(" | "));
        }
    }
    s
}

/// The plots: speedup by backend, τ by W×L, per-position acceptance, batch scaling. Returns
/// (file name, SVG); a plot with nothing to show is left out.
pub fn plots(report: &Report) -> Vec<(String, String)> {
    let mut out = vec![];
    let title = format!("{}, {} prompts, {} tokens", report.settings.suite, report.settings.prompts, report.settings.new_tokens);
    let rd: Vec<&Cell> = report.cells.iter().filter(|c| !c.key.is_autoregressive()).collect();
    // Speedup by backend: one series per backend/threads/weights/batch/T over the ReDrafter cells.
    let mut groups: BTreeMap<String, Vec<&Cell>> = BTreeMap::new();
    for c in &rd {
        let k = &c.key;
        groups.entry(format!("{} t{} {} b{} T{}", k.backend, k.threads, k.weights, k.batch, k.temperature)).or_default().push(c);
    }
    // Speedup and τ: one bar group per draft source and grid, one bar per backend setting.
    let names: Vec<String> = groups.keys().cloned().collect();
    let mut labels: Vec<String> = vec![];
    for cs in groups.values() {
        for c in cs {
            if !labels.contains(&c.key.label()) {
                labels.push(c.key.label());
            }
        }
    }
    let bars = |f: &dyn Fn(&Cell) -> Option<f64>| -> Vec<(String, Vec<Option<f64>>)> {
        labels
            .iter()
            .map(|l| (l.clone(), groups.values().map(|cs| cs.iter().find(|c| &c.key.label() == l).and_then(|c| f(c))).collect()))
            .collect()
    };
    if !labels.is_empty() {
        out.push(("speedup.svg".into(), bar_chart(&format!("speedup over autoregressive (wall), {title}"), "speedup (x)", &names, &bars(&|c| c.speedup), Some(1.0))));
        out.push(("tau.svg".into(), bar_chart(&format!("τ (tokens per step) by draft source and W×L, {title}"), "τ", &names, &bars(&|c| Some(c.tau)), Some(1.0))));
    }
    let acc: Vec<Series> = groups
        .values()
        .next()
        .map(|cs| {
            cs.iter()
                .map(|c| Series { name: c.key.label(), points: c.acceptance_by_position.iter().enumerate().map(|(i, &a)| ((i + 1) as f64, a)).collect() })
                .filter(|s| !s.points.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !acc.is_empty() {
        out.push(("acceptance.svg".into(), line_chart(&format!("acceptance by draft position, {title}"), "draft position", "accepted / offered", &acc)));
    }
    if report.settings.batches.len() > 1 {
        let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for c in &report.cells {
            let k = &c.key;
            by.entry(format!("{} t{} {} T{} {}", k.backend, k.threads, k.weights, k.temperature, k.label()))
                .or_default()
                .push((k.batch as f64, c.decode_tokens_per_second.median));
        }
        let series: Vec<Series> = by.into_iter().map(|(name, points)| Series { name, points }).collect();
        out.push(("batch.svg".into(), line_chart(&format!("batch scaling, {title}"), "batch size", "decode tok/s (all rows)", &series)));
    }
    out
}

/// Writes `bench.json`, `bench.csv`, `bench.md` and the plots into `dir`.
pub fn write(report: &Report, dir: &Path) -> Result<(), BenchError> {
    let put = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| BenchError::file(&p, e))
    };
    put("bench.json", serde_json::to_string_pretty(report).map_err(|e| BenchError::Measure(e.to_string()))?)?;
    put("bench.csv", csv(report))?;
    put("bench.md", markdown(report))?;
    for (name, svg) in plots(report) {
        put(&name, svg)?;
    }
    Ok(())
}

/// A draft source as the report names it: its directory (with `+lookup:MIN:MAX` when prompt lookup
/// comes first), or `prompt-lookup`.
fn describe(d: &super::plan::DrafterSpec) -> String {
    match (&d.dir, d.lookup_first) {
        (None, _) => "prompt-lookup".into(),
        (Some(p), None) => p.display().to_string(),
        (Some(p), Some((min, max))) => format!("{}+lookup:{min}:{max}", p.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p90, p.p99), (50.0, 90.0, 99.0));
        let one = percentiles(vec![3.0]);
        assert_eq!((one.p50, one.p99), (3.0, 3.0));
        assert!(percentiles(vec![]).p50.is_nan());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}

