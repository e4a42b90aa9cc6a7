//! Autoregressive decode speed and peak memory of SmolLM2-135M (f32, batch 1, one thread) on each
//! CPU backend, next to Hugging Face transformers on the same prompt and thread count.
//!
//!     cargo run --release --all-features -p redrafter-bench --bin ar_decode -- --runs 3
//!
//! Each measurement runs in a child process so that peak RSS belongs to one backend alone.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use redrafter::KernelBackend;
use clap::Parser;
use redrafter::backends::{BackendKind, BackendTask, run_on};
use redrafter::{Autoregressive, GenerationConfig, Generator};
use redrafter_io::Message;
use redrafter_io::fetch::{SMOLLM2_135M_INSTRUCT, fetch};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "Write a short story about a robot who learns to paint.")]
    prompt: String,
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Backends to measure (default: every compiled-in CPU backend).
    #[arg(long)]
    backend: Vec<String>,
    /// Python with torch + transformers for the reference column (skipped if it fails).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Internal: measure one backend in this process and print one JSON line.
    #[arg(long, hide = true)]
    child: Option<String>,
}

struct Measure {
    prompt: String,
    new_tokens: usize,
    model: PathBuf,
}

impl BackendTask for Measure {
    type Output = serde_json::Value;

    fn run<B: KernelBackend>(self, device: B::Device) -> serde_json::Value {
        let m = redrafter_llama::load::<B>(&self.model, &device).expect("load model");
        let tpl = m.tokenizer.chat_template.as_ref().expect("chat template");
        let ids = m.tokenizer.encode(&tpl.render(&[Message::new("user", &self.prompt)], true).unwrap()).unwrap();
        let g = Generator::new(&m.model, None);
        let cfg = GenerationConfig { max_new_tokens: self.new_tokens, ..Default::default() };
        // Warm-up: first-touch allocations and (on cubecl) kernel compilation.
        g.generate(&mut Autoregressive, &[ids.clone()], &GenerationConfig { max_new_tokens: 4, ..cfg.clone() }, None).unwrap();
        let t = Instant::now();
        let out = g.generate(&mut Autoregressive, &[ids.clone()], &cfg, None).unwrap();
        let wall = t.elapsed().as_secs_f64();
        serde_json::json!({
            "prompt_tokens": ids.len(),
            "new_tokens": out.rows[0].tokens.len(),
            "decode_tokens_per_second": out.stats.decode_tokens_per_second,
            "prefill_seconds": out.stats.prefill_seconds,
            "wall_seconds": wall,
            "peak_rss_mb": peak_rss_mb(),
        })
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

const TRANSFORMERS: &str = r#"
import json, resource, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(1)
path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import os
d, f = os.path.split(path)
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0, attention_mask=torch.ones_like(ids))
with torch.no_grad():
    model.generate(ids, max_new_tokens=4, **kw)
    t = time.time(); model(ids); prefill = time.time() - t
    t = time.time(); out = model.generate(ids, max_new_tokens=n, **kw); wall = time.time() - t
new = out.shape[1] - ids.shape[1]
print(json.dumps({"prompt_tokens": ids.shape[1], "new_tokens": new, "decode_tokens_per_second": (new - 1) / max(wall - prefill, 1e-9),
                  "prefill_seconds": prefill, "wall_seconds": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"#;

fn main() {
    let args = Args::parse();
    let model = fetch(&SMOLLM2_135M_INSTRUCT, &mut |_, _, _| {}).expect("fetch default model");
    if let Some(b) = &args.child {
        let kind: BackendKind = b.parse().expect("backend");
        let v = run_on(kind, Measure { prompt: args.prompt.clone(), new_tokens: args.new_tokens, model });
        println!("{v}");
        return;
    }
    let backends: Vec<String> = if args.backend.is_empty() {
        [BackendKind::NdArray, BackendKind::Flex].into_iter().filter(|k| k.is_compiled()).map(|k| k.name().to_string()).collect()
    } else {
        args.backend.clone()
    };
    let exe = std::env::current_exe().expect("current exe");
    let mut rows = vec![];
    let one_thread = [("RAYON_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1")];
    for name in backends.iter().map(String::as_str).chain(std::iter::once("transformers")) {
        let mut runs = vec![];
        for r in 0..args.runs {
            eprint!("\r{name}: run {}/{}   ", r + 1, args.runs);
            let out = if name == "transformers" {
                Command::new(&args.python).args(["-c", TRANSFORMERS]).arg(&model).arg(&args.prompt).arg(args.new_tokens.to_string()).envs(one_thread).output()
            } else {
                Command::new(&exe).args(["--child", name, "--new-tokens", &args.new_tokens.to_string(), "--prompt", &args.prompt]).envs(one_thread).output()
            };
            match out {
                Ok(o) if o.status.success() => {
                    let line = String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("").to_string();
                    runs.push(serde_json::from_str::<serde_json::Value>(&line).expect("child json"));
                }
                Ok(o) => {
                    eprintln!("\n{name} failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""));
                    break;
                }
                Err(e) => {
                    eprintln!("\n{name} could not start: {e}");
                    break;
                }
            }
        }
        eprintln!();
        if runs.is_empty() {
            continue;
        }
        let col = |k: &str| median(runs.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect());
        rows.push((name.to_string(), col("decode_tokens_per_second"), col("prefill_seconds"), col("peak_rss_mb"), runs[0]["prompt_tokens"].clone()));
    }
    println!("| backend | decode tok/s (median of {}) | prefill s | peak RSS MB | prompt tokens |", args.runs);
    println!("|---|---|---|---|---|");
    for (name, tps, pre, rss, pt) in rows {
        println!("| {name} | {tps:.1} | {pre:.2} | {rss:.0} | {pt} |");
    }
}
