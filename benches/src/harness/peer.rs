//! Peer implementations as baseline cells: Hugging Face transformers and llama.cpp
//! (llama-cpp-python) decode the same prompts of the same GGUF file, greedy, batch 1, the same
//! number of new tokens, at the same thread count, through a Python the user names
//! (`--peer transformers=PYTHON`, `--peer llama-cpp=PYTHON`). Each is measured in its own
//! process; one that is not installed is reported as skipped with Python's reason.
//!
//! The script prints `@bench-ready {…}` once a weight format is loaded and warmed up, and
//! `@bench-record {…}` per finished run, with the fields of [`RunMetrics`] (decode steps are the
//! tokens after the first, which the prefill produces, as in the decoding loop).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::BenchError;
use super::measure::{RunMetrics, WeightsReady};
use super::suite::Prompt;

/// The peers the harness knows, by the name their cells carry as backend.
pub const KNOWN: [&str; 2] = ["transformers", "llama.cpp"];

/// A peer and the Python interpreter that has it installed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerSpec {
    /// `transformers` or `llama.cpp`.
    pub name: String,
    pub python: PathBuf,
}

impl PeerSpec {
    /// `transformers=PYTHON`, `llama-cpp=PYTHON` (or `llama.cpp=`), or a bare name (`python3`).
    pub fn parse(s: &str) -> Result<Self, BenchError> {
        let (name, python) = s.split_once('=').unwrap_or((s, "python3"));
        let name = match name {
            "transformers" => "transformers",
            "llama-cpp" | "llama.cpp" => "llama.cpp",
            _ => return Err(BenchError::Option(format!("--peer `{s}`: expected transformers=PYTHON or llama-cpp=PYTHON"))),
        };
        if python.is_empty() {
            return Err(BenchError::Option(format!("--peer `{s}`: the Python interpreter is missing after `=`")));
        }
        Ok(Self { name: name.to_string(), python: PathBuf::from(python) })
    }

    /// The weight formats this peer is measured in, named as ours: transformers dequantizes the
    /// GGUF to f32 at load; llama.cpp runs the file as stored (our `native`) or its own f16/f32
    /// conversion of it.
    pub fn weights(&self, ours: &[String]) -> Vec<String> {
        if self.name == "transformers" {
            return vec!["f32".into()];
        }
        let mut w: Vec<String> = ours.iter().map(|w| if w == "native-q8" { "native".to_string() } else { w.clone() }).collect();
        w.dedup();
        w
    }
}

#[derive(Deserialize)]
struct RunLine {
    weights: String,
    run: usize,
    metrics: RunMetrics,
}

/// Runs `peer` on `prompts` for the `(weights, run)` pairs in `todo`, calling `on_run` as each
/// run finishes (so a run stopped by a time limit keeps what was done). An error carries the
/// reason the peer could not run (the end of its stderr).
pub fn run(
    peer: &PeerSpec,
    model: &Path,
    prompts: &[Prompt],
    new_tokens: usize,
    threads: usize,
    todo: &[(String, usize)],
    work_dir: &Path,
    on_run: &mut dyn FnMut(&str, usize, RunMetrics) -> Result<(), BenchError>,
) -> Result<Vec<WeightsReady>, BenchError> {
    use std::io::{BufRead, BufReader};
    let prompts_path = work_dir.join(format!("{}-prompts.json", peer.name));
    let json = serde_json::to_string(prompts).map_err(|e| BenchError::Measure(e.to_string()))?;
    std::fs::write(&prompts_path, json).map_err(|e| BenchError::file(&prompts_path, e))?;
    let todo_arg: Vec<String> = todo.iter().map(|(w, r)| format!("{w}:{r}")).collect();
    let script = format!("{COMMON}{}", if peer.name == "transformers" { TRANSFORMERS } else { LLAMA_CPP });
    let converted = redrafter_io::fetch::cache_dir().join("llama-cpp");
    let threads_s = threads.to_string();
    let mut child = Command::new(&peer.python)
        .arg("-c")
        .arg(script)
        .arg(model)
        .arg(&prompts_path)
        .arg(new_tokens.to_string())
        .arg(&threads_s)
        .arg(todo_arg.join(","))
        .arg(&converted)
        .envs([("OMP_NUM_THREADS", &threads_s), ("MKL_NUM_THREADS", &threads_s)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::Measure(format!("could not start {}: {e}", peer.python.display())))?;
    let err_thread = super::run::stderr_tail(child.stderr.take().expect("piped stderr"), 20);
    let mut ready = vec![];
    let out = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let bad = |e: serde_json::Error| BenchError::Measure(format!("{}: unreadable line from the peer ({e}): {line}", peer.name));
        if let Some(j) = line.strip_prefix("@bench-ready ") {
            ready.push(serde_json::from_str(j).map_err(bad)?);
        } else if let Some(j) = line.strip_prefix("@bench-record ") {
            let r: RunLine = serde_json::from_str(j).map_err(bad)?;
            on_run(&r.weights, r.run, r.metrics)?;
        }
    }
    let status = child.wait().map_err(|e| BenchError::Measure(e.to_string()))?;
    let stderr = err_thread.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = stderr.iter().rev().map(String::as_str).filter(|l| !l.trim().is_empty()).take(3).collect();
        let why: Vec<&str> = tail.into_iter().rev().collect();
        return Err(BenchError::Measure(format!("{} ({}) failed: {}", peer.name, peer.python.display(), why.join(" / "))));
    }
    Ok(ready)
}

/// The start of both scripts: arguments, the run loop and the record lines. Each peer's part
/// defines `load(fmt) -> (formats, tokenize(prompt) -> ids, prefill(ids) -> first token,
/// step(token) -> next token)` and calls `main(load)`.
const COMMON: &str = r#"
import json, resource, sys, time
model_path, prompts_path, n_new, threads, todo, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
prompts = json.load(open(prompts_path))
todo = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in todo.split(",") if t]

def measure(tokenize, prefill, step):
    m = dict(prompts=len(prompts), prompt_tokens=0, new_tokens=0, prefill_seconds=0.0, decode_seconds=0.0,
             wall_seconds=0.0, steps=0, row_steps=0, committed=0, acceptance_by_position=[], packed_tokens=0,
             grid_tokens=0, phase_seconds={}, ttft_seconds=[], tpot_seconds=[], by_category={}, mismatches=None)
    for p in prompts:
        ids = tokenize(p)
        t0 = time.perf_counter()
        tok = prefill(ids)
        t1 = time.perf_counter()
        for _ in range(n_new - 1):
            tok = step(tok)
        t2 = time.perf_counter()
        m["prompt_tokens"] += len(ids); m["new_tokens"] += n_new
        m["prefill_seconds"] += t1 - t0; m["decode_seconds"] += t2 - t1; m["wall_seconds"] += t2 - t0
        m["steps"] += n_new - 1; m["row_steps"] += n_new - 1; m["committed"] += n_new - 1
        m["ttft_seconds"].append(t1 - t0)
        if n_new > 1:
            m["tpot_seconds"].append((t2 - t1) / (n_new - 1))
        c = m["by_category"].setdefault(p["category"], [0, 0])
        c[0] += n_new - 1; c[1] += n_new - 1
    m["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return m

def main(load):
    for fmt in dict.fromkeys(w for w, _ in todo):
        t0 = time.perf_counter()
        formats, tokenize, prefill, step = load(fmt)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tok = prefill(tokenize(prompts[0]))
        for _ in range(3):
            tok = step(tok)
        warm = time.perf_counter() - t0
        print("@bench-ready " + json.dumps(dict(weights=fmt, formats=formats, load_seconds=load_s, warmup_seconds=warm)), flush=True)
        for w, run in todo:
            if w == fmt:
                print("@bench-record " + json.dumps(dict(weights=fmt, run=run, metrics=measure(tokenize, prefill, step))), flush=True)
"#;

/// Hugging Face transformers on the GGUF (dequantized to f32 at load), greedy, with its KV
/// cache, one token per forward after the prompt.
const TRANSFORMERS: &str = r#"
import os
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(threads)

def load(fmt):
    d, f = os.path.split(model_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    state = {}
    def tokenize(p):
        text = p["text"] if p.get("raw") or not tok.chat_template else tok.apply_chat_template(
            [{"role": "user", "content": p["text"]}], tokenize=False, add_generation_prompt=True)
        return tok(text, add_special_tokens=False)["input_ids"]
    @torch.no_grad()
    def prefill(ids):
        out = model(torch.tensor([ids]), use_cache=True)
        state["past"] = out.past_key_values
        return int(out.logits[0, -1].argmax())
    @torch.no_grad()
    def step(t):
        out = model(torch.tensor([[t]]), past_key_values=state["past"], use_cache=True)
        state["past"] = out.past_key_values
        return int(out.logits[0, -1].argmax())
    return "f32 (transformers " + __import__("transformers").__version__ + ", torch " + torch.__version__ + ")", tokenize, prefill, step

main(load)
"#;

/// llama.cpp through llama-cpp-python: the GGUF as stored (`native`) or converted by
/// llama.cpp's own quantizer to f16/f32 (`allow_requantize`, kept in the cache dir), greedy.
const LLAMA_CPP: &str = r#"
import ctypes, os
import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

def load(fmt):
    path = model_path
    if fmt in ("f16", "f32"):
        ftype = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "f32": llama_cpp.LLAMA_FTYPE_ALL_F32}[fmt]
        out = os.path.join(cache, os.path.basename(path)[:-len(".gguf")] + "." + fmt + ".gguf")
        if not os.path.exists(out):
            os.makedirs(cache, exist_ok=True)
            p = llama_cpp.llama_model_quantize_default_params()
            p.ftype, p.allow_requantize, p.nthread = ftype, True, 1
            if llama_cpp.llama_model_quantize(path.encode(), (out + ".part").encode(), ctypes.byref(p)) != 0:
                sys.exit("llama.cpp could not convert " + path + " to " + fmt)
            os.rename(out + ".part", out)
        path = out
    elif fmt != "native":
        sys.exit("llama.cpp runs native (the GGUF as stored), f16 or f32, not " + fmt)
    llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=4096, n_batch=512, verbose=False)
    template = llm.metadata.get("tokenizer.chat_template")
    chat = Jinja2ChatFormatter(template=template, eos_token="", bos_token="") if template else None
    def tokenize(p):
        text = p["text"] if p.get("raw") or chat is None else chat(messages=[{"role": "user", "content": p["text"]}]).prompt
        return llm.tokenize(text.encode(), add_bos=False, special=True)
    def prefill(ids):
        llm.reset()
        llm.eval(ids)
        return llm.sample(temp=0.0, top_k=1)
    def step(t):
        llm.eval([t])
        return llm.sample(temp=0.0, top_k=1)
    what = "the GGUF as stored" if fmt == "native" else fmt + " (llama.cpp's conversion)"
    return what + " (llama-cpp-python " + llama_cpp.__version__ + ")", tokenize, prefill, step

main(load)
"#;
