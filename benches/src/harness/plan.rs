//! What a bench measures: the axes, the settings every cell shares, and the key of one cell.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::BenchError;
use super::peer::PeerSpec;
use super::suite::Prompt;

/// A draft source under a name: a drafter directory (Apple's format), or prompt lookup, or a
/// drafter with prompt lookup first (`redrafter::LookupFirst`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrafterSpec {
    pub name: String,
    /// `None`: prompt lookup (`redrafter::PromptLookup`), no trained drafter.
    pub dir: Option<PathBuf>,
    /// With a drafter: copy first where the context repeats a suffix of these n-gram lengths
    /// (min, max), the drafter elsewhere. Plans written before it had none.
    #[serde(default)]
    pub lookup_first: Option<(usize, usize)>,
}

/// The n-gram lengths (min, max) `DIR+lookup` means: the library's default.
pub const LOOKUP_FIRST_DEFAULT: (usize, usize) = (redrafter::decode::LOOKUP_FIRST_NGRAMS.min_ngram, redrafter::decode::LOOKUP_FIRST_NGRAMS.max_ngram);

impl DrafterSpec {
    /// `NAME=DIR`, `NAME=prompt-lookup`, `prompt-lookup`, or a bare `DIR` (named after its last
    /// path component); a drafter directory may end in `+lookup` (copy first, n-grams 2..=4) or
    /// `+lookup:MIN:MAX`.
    pub fn parse(s: &str) -> Result<Self, BenchError> {
        let (name, what) = match s.split_once('=') {
            Some((n, w)) if !n.is_empty() && !w.is_empty() => (n.to_string(), w),
            Some(_) => return Err(BenchError::Option(format!("--drafter `{s}`: expected NAME=DIR or NAME=prompt-lookup"))),
            None if s == "prompt-lookup" => ("prompt-lookup".to_string(), s),
            None => {
                let p = std::path::Path::new(s);
                (p.file_name().map_or(s.to_string(), |n| n.to_string_lossy().into_owned()), s)
            }
        };
        if name.contains(',') || name.contains('"') {
            return Err(BenchError::Option(format!("--drafter name `{name}`: no commas or quotes (it is a CSV column value)")));
        }
        let (what, lookup_first) = match what.rsplit_once("+lookup") {
            Some((dir, rest)) if what != "prompt-lookup" => (dir, Some(parse_lookup(s, rest)?)),
            _ => (what, None),
        };
        let dir = (what != "prompt-lookup").then(|| PathBuf::from(what));
        match &dir {
            Some(d) if !d.is_dir() => {
                return Err(BenchError::Option(format!("--drafter {name}: `{}` is not a drafter directory", d.display())));
            }
            None if lookup_first.is_some() => {
                return Err(BenchError::Option(format!("--drafter `{s}`: `+lookup` goes after a drafter directory")));
            }
            _ => {}
        }
        Ok(Self { name, dir, lookup_first })
    }

    /// A drafter directory as it is (no lookup).
    pub fn drafter(name: &str, dir: PathBuf) -> Self {
        Self { name: name.into(), dir: Some(dir), lookup_first: None }
    }
}

/// The n-gram lengths after `+lookup`: nothing (the default) or `:MIN:MAX`.
fn parse_lookup(spec: &str, rest: &str) -> Result<(usize, usize), BenchError> {
    if rest.is_empty() {
        return Ok(LOOKUP_FIRST_DEFAULT);
    }
    let bad = || BenchError::Option(format!("--drafter `{spec}`: expected `+lookup` or `+lookup:MIN:MAX` after the drafter directory"));
    let mut parts = rest.strip_prefix(':').ok_or_else(bad)?.split(':').map(|p| p.parse::<usize>().map_err(|_| bad()));
    let (min, max) = match (parts.next(), parts.next(), parts.next()) {
        (Some(min), Some(max), None) => (min?, max?),
        _ => return Err(bad()),
    };
    if min == 0 || min > max {
        return Err(BenchError::Option(format!("--drafter `{spec}`: lookup n-grams need 1 <= MIN <= MAX")));
    }
    Ok((min, max))
}

/// Everything one bench run measures. The parent writes it to `plan.json`; each child reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The suite's name (`mt-bench`, `raw-text`, `code-edit`, or the prompts file).
    pub suite: String,
    pub prompts: Vec<Prompt>,
    pub new_tokens: usize,
    pub model: PathBuf,
    pub weights: Vec<String>,
    pub backends: Vec<String>,
    pub threads: Vec<usize>,
    pub drafters: Vec<DrafterSpec>,
    /// Beam grids (W, L).
    pub grids: Vec<(usize, usize)>,
    /// Adaptive draft-length thresholds p (`ReDrafter::draft_threshold`), each a ReDrafter cell
    /// per drafter and grid; 0 = off. Plans written before it had none: one cell at 0.
    #[serde(default = "thresholds_off")]
    pub thresholds: Vec<f32>,
    pub batches: Vec<usize>,
    pub temperatures: Vec<f32>,
    pub top_k: usize,
    pub top_p: f32,
    /// `exact` or `apple` (sampled ReDrafter's acceptance rule).
    pub acceptance: String,
    pub seed: u64,
    pub runs: usize,
    /// Peer implementations measured as autoregressive baselines (batch 1, greedy).
    #[serde(default)]
    pub peers: Vec<PeerSpec>,
}

/// One measured configuration. `strategy` is `autoregressive` or `redrafter`; a ReDrafter cell
/// names its drafter and beam grid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellKey {
    pub backend: String,
    pub threads: usize,
    pub weights: String,
    pub batch: usize,
    pub temperature: f32,
    pub strategy: String,
    pub drafter: Option<String>,
    pub width: usize,
    pub length: usize,
    /// Adaptive draft-length threshold p; 0 = off (and in records made before it existed).
    #[serde(default)]
    pub threshold: f32,
}

fn thresholds_off() -> Vec<f32> {
    vec![0.0]
}

impl CellKey {
    /// A string that identifies the cell (map keys, resume).
    pub fn id(&self) -> String {
        // A threshold is only named when set, so records made before it keep their ids.
        let p = if self.threshold > 0.0 { format!("|p{}", self.threshold) } else { String::new() };
        format!(
            "{}|t{}|{}|b{}|T{}|{}|{}|{}x{}{p}",
            self.backend, self.threads, self.weights, self.batch, self.temperature, self.strategy,
            self.drafter.as_deref().unwrap_or("-"), self.width, self.length
        )
    }

    /// The autoregressive cell a ReDrafter cell is compared with: same backend, threads, weights,
    /// batch and temperature.
    pub fn baseline(&self) -> CellKey {
        CellKey { strategy: "autoregressive".into(), drafter: None, width: 0, length: 0, threshold: 0.0, ..self.clone() }
    }

    pub fn is_autoregressive(&self) -> bool {
        self.strategy == "autoregressive"
    }

    /// `autoregressive`, `NAME W×L` or, with an adaptive length, `NAME W×L p0.2`.
    pub fn label(&self) -> String {
        match &self.drafter {
            Some(d) if self.threshold > 0.0 => format!("{d} {}x{} p{}", self.width, self.length, self.threshold),
            Some(d) => format!("{d} {}x{}", self.width, self.length),
            None => self.strategy.clone(),
        }
    }
}

impl Plan {
    /// Checks the axes before anything runs: every list non-empty, every value usable.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |what: &str| Err(BenchError::Option(what.to_string()));
        if self.prompts.is_empty() {
            return bad("the suite has no prompts");
        }
        if self.new_tokens == 0 {
            return bad("--new-tokens must be at least 1");
        }
        if self.runs == 0 {
            return bad("--runs must be at least 1");
        }
        for (name, empty) in [
            ("--weights", self.weights.is_empty()),
            ("--backends", self.backends.is_empty()),
            ("--threads", self.threads.is_empty()),
            ("--batch", self.batches.is_empty()),
            ("--temperature", self.temperatures.is_empty()),
        ] {
            if empty {
                return bad(&format!("{name} lists nothing"));
            }
        }
        for w in &self.weights {
            w.parse::<redrafter_llama::WeightFormat>().map_err(|e| BenchError::Option(format!("--weights: {e}")))?;
        }
        if self.threads.contains(&0) || self.batches.contains(&0) {
            return bad("--threads and --batch values must be at least 1");
        }
        if self.batches.iter().any(|&b| b > self.prompts.len()) {
            return bad(&format!("a --batch value is larger than the suite's {} prompts", self.prompts.len()));
        }
        for &t in &self.temperatures {
            if !t.is_finite() || t < 0.0 {
                return bad(&format!("--temperature {t}: must be a finite number ≥ 0"));
            }
        }
        for &(w, l) in &self.grids {
            redrafter::BeamConfig { width: w, length: l }.validate().map_err(|e| BenchError::Option(format!("--grids {w}x{l}: {e}")))?;
        }
        if self.thresholds.is_empty() {
            return bad("--draft-thresholds lists nothing");
        }
        for &p in &self.thresholds {
            redrafter::decode::validate_draft_threshold(p).map_err(|e| BenchError::Option(format!("--draft-thresholds {p}: {e}")))?;
        }
        self.acceptance.parse::<redrafter::Acceptance>().map_err(|e| BenchError::Option(format!("--acceptance: {e}")))?;
        let mut names: Vec<&str> = self.drafters.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        names.dedup();
        if names.len() != self.drafters.len() {
            return bad("two --drafter entries have the same name");
        }
        let mut peers: Vec<&str> = self.peers.iter().map(|p| p.name.as_str()).collect();
        peers.sort();
        peers.dedup();
        if peers.len() != self.peers.len() {
            return bad("two --peer entries name the same peer");
        }
        Ok(())
    }

    /// An identity of the settings every cell shares (prompts, lengths, model, drafters, sampling
    /// options): records measured under other settings are not reused on resume.
    pub fn settings_id(&self) -> String {
        let model_bytes = std::fs::metadata(&self.model).map(|m| m.len()).unwrap_or(0);
        let shared = serde_json::json!({
            "suite": self.suite, "prompts": self.prompts, "new_tokens": self.new_tokens,
            "model": self.model, "model_bytes": model_bytes, "drafters": self.drafters,
            "top_k": self.top_k, "top_p": self.top_p, "acceptance": self.acceptance, "seed": self.seed,
        });
        format!("{:016x}", fnv1a(shared.to_string().as_bytes()))
    }

    /// Every cell of one backend at one thread count, in the order a child measures them.
    pub fn cells(&self, backend: &str, threads: usize) -> Vec<CellKey> {
        let mut out = vec![];
        for w in &self.weights {
            for &batch in &self.batches {
                for &temperature in &self.temperatures {
                    let base = CellKey {
                        backend: backend.to_string(),
                        threads,
                        weights: w.clone(),
                        batch,
                        temperature,
                        strategy: "autoregressive".into(),
                        drafter: None,
                        width: 0,
                        length: 0,
                        threshold: 0.0,
                    };
                    out.push(base.clone());
                    for d in &self.drafters {
                        for &(width, length) in &self.grids {
                            for &threshold in &self.thresholds {
                                let drafter = Some(d.name.clone());
                                out.push(CellKey { strategy: "redrafter".into(), drafter, width, length, threshold, ..base.clone() });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The cells of a peer at one thread count: autoregressive, batch 1, greedy, one per weight
    /// format the peer holds ([`PeerSpec::weights`]).
    pub fn peer_cells(&self, peer: &PeerSpec, threads: usize) -> Vec<CellKey> {
        peer.weights(&self.weights)
            .into_iter()
            .map(|weights| CellKey {
                backend: peer.name.clone(),
                threads,
                weights,
                batch: 1,
                temperature: 0.0,
                strategy: "autoregressive".into(),
                drafter: None,
                width: 0,
                length: 0,
                threshold: 0.0,
            })
            .collect()
    }
}

/// FNV-1a, 64 bit: a stable content hash without a dependency.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// `1,8,32` → values; an unparsable entry is an error naming the option.
pub fn parse_list<T: std::str::FromStr>(option: &str, s: &str) -> Result<Vec<T>, BenchError>
where
    T::Err: std::fmt::Display,
{
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<T>().map_err(|e| BenchError::Option(format!("{option} `{v}`: {e}"))))
        .collect()
}

/// `1x3,2x4` → grids.
pub fn parse_grids(s: &str) -> Result<Vec<(usize, usize)>, BenchError> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|g| {
            let err = || BenchError::Option(format!("--grids `{g}`: expected WxL, e.g. 1x3"));
            let (w, l) = g.split_once(['x', 'X']).ok_or_else(err)?;
            Ok((w.trim().parse().map_err(|_| err())?, l.trim().parse().map_err(|_| err())?))
        })
        .collect()
}

#[cfg(test)]
mod drafter_spec_tests {
    use super::*;

    #[test]
    fn lookup_first_follows_a_drafter_directory() {
        let dir = std::env::temp_dir();
        let d = dir.display();
        let plain = DrafterSpec::parse(&format!("a={d}")).unwrap();
        assert_eq!((plain.dir.as_deref(), plain.lookup_first), (Some(dir.as_path()), None));
        let first = DrafterSpec::parse(&format!("b={d}+lookup")).unwrap();
        assert_eq!((first.dir.as_deref(), first.lookup_first), (Some(dir.as_path()), Some(LOOKUP_FIRST_DEFAULT)));
        assert_eq!(DrafterSpec::parse(&format!("c={d}+lookup:3:5")).unwrap().lookup_first, Some((3, 5)));
        let lookup = DrafterSpec::parse("l=prompt-lookup").unwrap();
        assert_eq!((lookup.dir, lookup.lookup_first), (None, None));
        for bad in ["+lookup:0:3", "+lookup:4:3", "+lookup:2", "+lookup2:3", "+lookup:2:3:4", "+lookup:x:3"] {
            assert!(DrafterSpec::parse(&format!("e={d}{bad}")).is_err(), "{bad}");
        }
        assert!(DrafterSpec::parse("f=prompt-lookup+lookup").is_err());
        assert!(DrafterSpec::parse("g=/no/such/dir+lookup").is_err());
    }
}
