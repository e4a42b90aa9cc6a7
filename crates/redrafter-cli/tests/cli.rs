//! The `redrafter` binary: bad input gives a message and a non-zero exit code, never a panic.

use std::process::Command;

use redrafter_io::GgmlType;
use redrafter_llama::LlamaConfig;
use redrafter_llama::testing::{tiny_vocab, write_tiny_gguf};

/// Each test writes its own file: rewriting one that another test's process has memory-mapped
/// would kill that process with SIGBUS.
fn tiny_model(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("redrafter-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("tiny.gguf");
    write_tiny_gguf(&p, &LlamaConfig::tiny(tiny_vocab().0.len()), 1, GgmlType::Q8_0).unwrap();
    p
}

fn run(args: &[&str]) -> (i32, String, String) {
    output(Command::new(env!("CARGO_BIN_EXE_redrafter")).args(args))
}

/// [`run`] with `cache` as the cache directory, for commands that write there (a training run's
/// hidden-state cache), so that tests leave the user's `~/.cache/redrafter` alone.
fn run_in_cache(cache: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    output(Command::new(env!("CARGO_BIN_EXE_redrafter")).args(args).env("REDRAFTER_CACHE", cache))
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn generates_json_with_a_local_model() {
    let m = tiny_model("json");
    let (code, stdout, stderr) = run(&["generate", "the weather", "--model", m.to_str().unwrap(), "--max-new-tokens", "5", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 5);
    assert!(v["text"].is_string());
    assert_eq!(v["stats"]["new_tokens"], 5);
    assert!(v["stats"]["tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn unknown_backend() {
    let (code, _, stderr) = run(&["generate", "hi", "--backend", "tpu", "--model", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown backend `tpu`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn prompt_longer_than_context() {
    let m = tiny_model("long");
    let long = "the ".repeat(400);
    let (code, _, stderr) = run(&["generate", &long, "--raw", "--model", m.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("but the context holds 256"), "{stderr}");
}

#[test]
fn bad_model_file_and_options() {
    let bad = std::env::temp_dir().join(format!("redrafter-cli-bad-{}.gguf", std::process::id()));
    std::fs::write(&bad, b"GGUF\x03\0\0\0").unwrap();
    let (code, _, stderr) = run(&["generate", "hi", "--model", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("truncated"), "{stderr}");

    let m = tiny_model("opts");
    let (code, _, stderr) = run(&["generate", "hi", "--model", m.to_str().unwrap(), "--top-p", "0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("top-p must be in (0, 1]"), "{stderr}");
}

/// A random drafter for the tiny model, in Apple's format.
fn tiny_drafter(name: &str, hidden: usize) -> std::path::PathBuf {
    use redrafter::{Drafter, DrafterConfig, save_drafter};
    let dir = std::env::temp_dir().join(format!("redrafter-cli-{}-{name}-drafter", std::process::id()));
    let cfg = DrafterConfig::for_llm(tiny_vocab().0.len(), hidden).with_tied_lm_head(hidden == 64);
    let d = Drafter::<burn::backend::NdArray>::random(cfg, 3, &Default::default()).unwrap();
    save_drafter(&d, &dir, false).unwrap();
    dir
}

#[test]
fn redrafter_matches_autoregressive_and_reports_its_stats() {
    let m = tiny_model("rd");
    let d = tiny_drafter("rd", 64);
    let base = ["generate", "the weather", "--model", m.to_str().unwrap(), "--max-new-tokens", "12", "--json", "--backend", "ndarray"];
    let json = |extra: &[&str]| -> serde_json::Value {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(stdout.trim()).unwrap()
    };
    let rd = json(&["--drafter", d.to_str().unwrap(), "--beam-width", "3", "--beam-length", "3"]);
    let ar = json(&["--drafter", d.to_str().unwrap(), "--autoregressive"]);
    assert_eq!(rd["tokens"], ar["tokens"]);
    assert_eq!(ar["stats"]["tau"], 1.0);
    assert!(rd["stats"]["strategy"].as_str().unwrap().starts_with("redrafter"));
    assert!(rd["stats"]["tau"].as_f64().unwrap() >= 1.0);
    assert_eq!(rd["stats"]["acceptance_by_position"].as_array().unwrap().len(), 2);
    // The counts behind it (the CLI drafts adaptively on the CPU: a step may offer fewer).
    let counts = |f: &str| -> Vec<u64> { rd["stats"][f].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect() };
    let (row_steps, offered) = (rd["stats"]["row_steps"].as_u64().unwrap(), counts("offered_by_position"));
    assert!(offered.len() == 2 && row_steps >= offered[0] && offered[0] >= offered[1], "{offered:?} of {row_steps}");
    let mean = rd["stats"]["mean_offered"].as_f64().unwrap();
    assert!((mean * row_steps as f64 - (offered[0] + offered[1]) as f64).abs() < 1e-9, "{mean}");
    for (k, (a, o)) in counts("accepted_by_position").iter().zip(counts("offered_by_position")).enumerate() {
        assert_eq!(rd["stats"]["acceptance_by_position"][k].as_f64().unwrap(), *a as f64 / o as f64);
    }
    assert!(rd["stats"]["tree_compression"].as_f64().unwrap() > 0.0);
    // By default prompt lookup comes first (the drafter elsewhere); the drafter alone on request:
    // the same tokens, at a fixed and an adaptive length.
    assert!(rd["stats"]["strategy"].as_str().unwrap().contains("prompt lookup first"), "{}", rd["stats"]["strategy"]);
    // ... and the stats split out the copying rows (some of these 12 tokens' row-steps, or none).
    let copied = rd["stats"]["copied_row_steps"].as_u64().unwrap();
    assert!(copied <= row_steps && counts("copy_offered_by_position").iter().all(|&o| o <= copied), "{}", rd["stats"]);
    for p in ["0", "0.2"] {
        let alone = json(&["--drafter", d.to_str().unwrap(), "--no-lookup-first", "--beam-width", "3", "--beam-length", "4", "--draft-threshold", p]);
        assert_eq!(alone["tokens"], ar["tokens"], "drafter alone, p {p}");
        assert!(!alone["stats"]["strategy"].as_str().unwrap().contains("lookup"), "{}", alone["stats"]["strategy"]);
        let first = json(&["--drafter", d.to_str().unwrap(), "--beam-width", "3", "--beam-length", "4", "--draft-threshold", p]);
        assert_eq!(first["tokens"], ar["tokens"], "lookup first, p {p}");
    }
    let phases: Vec<&str> = rd["stats"]["phase_seconds"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap()).collect();
    assert_eq!(phases, ["draft", "tree", "verify", "accept"]);
}

#[test]
fn bad_drafters_are_refused() {
    let m = tiny_model("rdbad");
    let wrong = tiny_drafter("rdbad", 32);
    let (code, _, stderr) = run(&["generate", "hi", "--model", m.to_str().unwrap(), "--drafter", wrong.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("drafter hidden size is 32, LLM hidden size is 64"), "{stderr}");
    let (code, _, stderr) = run(&["generate", "hi", "--model", m.to_str().unwrap(), "--drafter", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/config.json"), "{stderr}");
    let d = tiny_drafter("rdopts", 64);
    let (code, _, stderr) =
        run(&["generate", "hi", "--model", m.to_str().unwrap(), "--drafter", d.to_str().unwrap(), "--beam-length", "1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("beam length must be at least 2"), "{stderr}");
}

#[test]
fn train_writes_a_loadable_drafter_plots_and_metrics() {
    let m = tiny_model("train");
    let dir = std::env::temp_dir().join(format!("redrafter-cli-{}-train", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Runs without --hidden-cache fill the default one: here, under the test's own directory.
    let cache_dir = dir.join("cache");
    let run = |args: &[&str]| run_in_cache(&cache_dir, args);
    let data = dir.join("data.jsonl");
    let docs: String = (0..12).map(|i| format!("{{\"text\": \"the weather on day {i} is where there is a will\"}}\n")).collect();
    std::fs::write(&data, docs).unwrap();
    let out = dir.join("drafter");
    let args = [
        "train", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--model", m.to_str().unwrap(),
        "--backend", "ndarray", "--steps", "3", "--batch-size", "2", "--grad-accum", "1", "--max-len", "24",
        "--draft-steps", "2", "--layers", "1", "--exit-dim", "32", "--eval-examples", "2", "--checkpoint-every", "2",
    ];
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("step 3/3 | loss"), "progress lines without a terminal: {stderr}");
    let hidden = std::fs::read_dir(cache_dir.join("hidden")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(hidden, 1, "the run's hidden-state cache is in the cache directory");
    for f in ["config.json", "model.safetensors", "loss.svg", "accuracy.svg", "eval.json", "train_log.jsonl"] {
        assert!(out.join(f).is_file(), "{f} missing; stderr: {stderr}");
    }
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["top_k_accuracy_per_step"].as_array().unwrap().len(), 2);
    let (code, _, stderr) =
        run(&["generate", "the weather", "--model", m.to_str().unwrap(), "--drafter", out.to_str().unwrap(), "--max-new-tokens", "4"]);
    assert_eq!(code, 0, "{stderr}");

    // Other options against the same checkpoint: refused.
    let mut other: Vec<&str> = args.to_vec();
    let at = other.iter().position(|a| *a == "--steps").unwrap() + 1;
    other[at] = "5";
    let (code, _, stderr) = run(&other);
    assert_eq!(code, 1);
    assert!(stderr.contains("another configuration"), "{stderr}");

    // Evaluation only (--steps 0) of the trained drafter on other data (--eval-data).
    let other_data = dir.join("other.jsonl");
    std::fs::write(&other_data, "{\"text\": \"where there is a will there is the weather\"}\n").unwrap();
    let eval_out = dir.join("eval-only");
    let m_s = m.to_str().unwrap();
    let eval_args = ["train", "--data", data.to_str().unwrap(), "--model", m_s, "--backend", "ndarray", "--max-len", "24", "--draft-steps", "2"];
    let (code, _, stderr) = run(&[&eval_args[..], &["--steps", "0", "--init", out.to_str().unwrap(), "--eval-data", other_data.to_str().unwrap(), "--out", eval_out.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("held-out draft step 2: top-1"), "{stderr}");
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(eval_out.join("eval.json")).unwrap()).unwrap();
    assert_eq!((eval["held_out_examples"].as_u64(), eval["held_out"].as_str()), (Some(1), other_data.to_str()));
    // Only evaluating: --data is not read at all (here it does not exist).
    let mut no_data = eval_args.to_vec();
    let at = no_data.iter().position(|a| *a == "--data").expect("the eval args name --data") + 1;
    let missing = dir.join("no-such-data.jsonl");
    no_data[at] = missing.to_str().unwrap();
    let (code, _, stderr) = run(&[&no_data[..], &["--steps", "0", "--init", out.to_str().unwrap(), "--eval-data", other_data.to_str().unwrap(), "--out", eval_out.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 examples to evaluate on"), "{stderr}");
    let (code, _, stderr) = run(&[&eval_args[..], &["--steps", "0", "--out", eval_out.to_str().unwrap()]].concat());
    assert_eq!(code, 1);
    assert!(stderr.contains("--steps 0 evaluates an existing drafter: give it with --init"), "{stderr}");
    let (code, _, stderr) =
        run(&[&eval_args[..], &["--steps", "0", "--init", out.to_str().unwrap(), "--context-attention", "2", "--out", eval_out.to_str().unwrap()]].concat());
    assert_eq!(code, 1);
    assert!(stderr.contains("--steps 0 (evaluate only) has none to read"), "{stderr}");

    // The hidden-state cache filled ahead by two shards, then read whole by the training run.
    let cache = dir.join("hidden");
    let fill_out = dir.join("fill");
    let mut fill_args = args.to_vec();
    let at = fill_args.iter().position(|a| *a == "--out").unwrap() + 1;
    fill_args[at] = fill_out.to_str().unwrap();
    let fill = |shard: &str| run(&[&fill_args[..], &["--hidden-cache", cache.to_str().unwrap(), "--fill-cache", shard]].concat());
    for shard in ["0/2", "1/2"] {
        let (code, _, stderr) = fill(shard);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains(&format!("shard {shard} is full (5 examples computed now)")), "{stderr}");
    }
    let (code, _, stderr) = fill("0/1");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("10 slots filled") && stderr.contains("(0 examples computed now)"), "{stderr}");
    let (code, _, stderr) = run(&[&args[..], &["--fill-cache", "2/2"]].concat());
    assert_eq!(code, 2, "a bad shard is a usage error: {stderr}");
    let (code, _, stderr) = run(&[&args[..], &["--hidden-cache", "off", "--fill-cache", "0/2"]].concat());
    assert_eq!(code, 1);
    assert!(stderr.contains("--fill-cache needs the hidden-state cache"), "{stderr}");

    // Two sources: one cache each (subdirectories of --hidden-cache), whatever their order; the
    // held-out examples come from the last one.
    let more = dir.join("more.jsonl");
    let docs: String = (0..6).map(|i| format!("{{\"text\": \"a will on day {i} is where the weather is\"}}\n")).collect();
    std::fs::write(&more, docs).unwrap();
    let caches = dir.join("hidden-two");
    let two = |first: &str, second: &str, extra: &[&str]| {
        let mut a: Vec<&str> = fill_args.to_vec();
        let at = a.iter().position(|x| *x == "--data").unwrap() + 1;
        a[at] = first;
        a.insert(at + 1, second);
        run(&[&a[..], &["--hidden-cache", caches.to_str().unwrap()], extra].concat())
    };
    let (data_s, more_s) = (data.to_str().unwrap(), more.to_str().unwrap());
    let (code, _, stderr) = two(data_s, more_s, &["--fill-cache", "0/1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(16 examples computed now)"), "12 of the first source, 6 − 2 held out of the second: {stderr}");
    // The other order: the first 10 of `data` and the first 4 of `more` are in their caches.
    let (code, _, stderr) = two(more_s, data_s, &["--fill-cache", "0/1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(2 examples computed now)"), "{stderr}");
    assert_eq!(std::fs::read_dir(&caches).unwrap().count(), 2, "one cache per source");
    let (code, _, stderr) = two(more_s, data_s, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("16 training examples") && stderr.contains("step 3/3 | loss"), "{stderr}");
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fill_out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["held_out"].as_str(), Some("the last 2 examples of the last --data"));
    let (code, _, stderr) = two(data_s, data_s, &["--fill-cache", "0/1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is given twice"), "{stderr}");

    std::fs::write(dir.join("empty.txt"), "").unwrap();
    let (code, _, stderr) = run(&["train", "--data", dir.join("empty.txt").to_str().unwrap(), "--out", dir.join("x").to_str().unwrap(), "--model", m.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("empty"), "{stderr}");
}

#[test]
fn distill_data_is_batched_and_resumes() {
    let m = tiny_model("distill");
    let dir = std::env::temp_dir().join(format!("redrafter-cli-{}-distill", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("convs.jsonl");
    let convs: String = (0..5)
        .map(|i| format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"the weather {i}\"}}, {{\"role\": \"assistant\", \"content\": \"is\"}}]}}\n"))
        .collect();
    std::fs::write(&data, convs).unwrap();
    let out = dir.join("distill.jsonl");
    let args = [
        "distill-data", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--model", m.to_str().unwrap(),
        "--backend", "ndarray", "--batch-size", "2", "--max-new-tokens", "4", "--no-holdout",
    ];
    let ids = || -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| {
                let j: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(j["messages"][0]["content"].as_str().unwrap(), format!("the weather {}", j["id"]));
                assert_eq!(j["messages"][1]["role"], "assistant");
                // The generated ids are kept; a row stops at end-of-turn or after 4 tokens.
                let n = j["answer_ids"].as_array().expect("answer_ids").len();
                match j["finish"].as_str().unwrap() {
                    "max_new_tokens" => assert_eq!(n, 4),
                    "eos" => assert!((1..=4).contains(&n)),
                    // 4 tokens cannot trip the loop rule (more than 16 repeats in 32).
                    other => panic!("finish {other}"),
                }
                j["id"].as_u64().unwrap()
            })
            .collect();
        v.sort();
        v
    };
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("5 / 5 prompts"), "progress without a terminal: {stderr}");
    assert_eq!(ids(), vec![0, 1, 2, 3, 4]);
    // Interrupted after two answers: the rerun answers only the other three.
    let kept: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&out, kept.concat()).unwrap();
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("2 prompts answered already, 3 to go"), "{stderr}");
    assert_eq!(ids(), vec![0, 1, 2, 3, 4]);
    // Killed in the middle of writing the third line: the torn tail is cut away and answered again.
    let lines: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(|l| format!("{l}\n")).collect();
    std::fs::write(&out, format!("{}{}", lines[..2].concat(), &lines[2][..lines[2].len() / 2])).unwrap();
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("ignoring an unfinished last line") && stderr.contains("2 prompts answered already, 3 to go"), "{stderr}");
    assert_eq!(ids(), vec![0, 1, 2, 3, 4]);
    // Two shards fill one file between them, each only its own ids.
    std::fs::remove_file(&out).unwrap();
    let sharded = |k: &str| {
        let all: Vec<&str> = args.iter().copied().chain(["--shard", k]).collect();
        let (code, _, stderr) = run(&all);
        assert_eq!(code, 0, "{stderr}");
    };
    sharded("0/2");
    assert_eq!(ids(), vec![0, 2, 4]);
    // A shard killed mid-write leaves a torn line; the next shard's append cuts it first.
    let whole = std::fs::read_to_string(&out).unwrap();
    // (It ends inside a two-byte character: the cut works on bytes.)
    std::fs::write(&out, [whole.as_bytes(), b"{\"id\": 1, \"messages\": \"caf\xC3"].concat()).unwrap();
    sharded("1/2");
    assert_eq!(ids(), vec![0, 1, 2, 3, 4]);
    let bad: Vec<&str> = args.iter().copied().chain(["--shard", "2/2"]).collect();
    let (code, _, stderr) = run(&bad);
    assert_ne!(code, 0);
    assert!(stderr.contains("--shard"), "{stderr}");

    // Without --out: a content-addressed file in the cache dir, printed; the same command resumes
    // it, and an option that changes the answers gets another file.
    let cache = dir.join("cache");
    let no_out: Vec<&str> = args.iter().enumerate().filter(|(i, _)| !(3..5).contains(i)).map(|(_, a)| *a).collect();
    assert_eq!(args[3], "--out");
    let run_in_cache = |all: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_redrafter")).args(all).env("REDRAFTER_CACHE", &cache).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        assert!(out.status.success(), "{stderr}");
        (std::path::PathBuf::from(stdout.trim()), stderr)
    };
    let run_cached = |extra: &[&str]| run_in_cache(&no_out.iter().chain(extra).copied().collect::<Vec<&str>>());
    let (first, _) = run_cached(&[]);
    assert!(first.starts_with(cache.join("distill")) && first.extension().is_some_and(|e| e == "jsonl"), "{first:?}");
    assert_eq!(std::fs::read_to_string(&first).unwrap().lines().count(), 5);
    let (again, stderr) = run_cached(&[]);
    assert_eq!(again, first);
    assert!(stderr.contains("5 prompts answered already, 0 to go"), "{stderr}");
    let (longer, _) = run_cached(&["--max-prompt-tokens", "200"]);
    assert_ne!(longer, first, "another prompt limit is another file");
    let (keep, _) = run_cached(&["--keep-loops"]);
    assert_ne!(keep, first, "answers that run on through loops are another file");
    let (later, _) = run_cached(&["--later-turns"]);
    assert_ne!(later, first, "later turns are another file");

    // --later-turns: every user turn after the first, with the conversation before it (the
    // data's own answers included) as the prompt; ids count those turns in corpus order.
    let multi = dir.join("multi.jsonl");
    let turn = |r: &str, c: String| format!("{{\"role\": \"{r}\", \"content\": \"{c}\"}}");
    let convs: String = (0..3)
        .map(|i| {
            let parts = [turn("user", format!("the weather {i}")), turn("assistant", "is".into()), turn("user", format!("and {i}")),
                turn("assistant", "so".into()), turn("user", format!("then {i}"))];
            format!("{{\"messages\": [{}]}}\n", parts.join(", "))
        })
        .collect();
    std::fs::write(&multi, convs).unwrap();
    let later_out = dir.join("later.jsonl");
    let (code, _, stderr) = run(&[
        "distill-data", "--data", multi.to_str().unwrap(), "--out", later_out.to_str().unwrap(), "--model", m.to_str().unwrap(),
        "--backend", "ndarray", "--batch-size", "4", "--max-new-tokens", "2", "--no-holdout", "--later-turns",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&later_out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines.sort_by_key(|j| j["id"].as_u64().unwrap());
    assert_eq!(lines.len(), 6, "two later turns in each of three conversations");
    for (id, j) in lines.iter().enumerate() {
        let (conv, k) = (id / 2, id % 2);
        let msgs = j["messages"].as_array().unwrap();
        assert_eq!(j["id"].as_u64().unwrap() as usize, id);
        assert_eq!(msgs.len(), 4 + 2 * k, "the conversation up to the turn, then the answer: {j}");
        assert_eq!(msgs[0]["content"].as_str().unwrap(), format!("the weather {conv}"));
        assert_eq!(msgs[1]["content"], "is", "the data's own answer stays as context");
        let asked = if k == 0 { format!("and {conv}") } else { format!("then {conv}") };
        assert_eq!(msgs[msgs.len() - 2]["content"].as_str().unwrap(), asked);
        assert_eq!(msgs[msgs.len() - 1]["role"], "assistant");
        assert!(!j["answer_ids"].as_array().unwrap().is_empty());
    }
    // The backend is part of the address (its rounding decides near ties), Flex's excepted.
    #[cfg(feature = "flex")]
    {
        let flex: Vec<&str> = no_out.iter().map(|a| if *a == "ndarray" { "flex" } else { *a }).collect();
        assert_ne!(run_in_cache(&flex).0, first, "another backend is another file");
    }

    // Sampled answers: another file, and each answer follows its conversation id, not its batch,
    // shard or resume point: batches of 1 and of 3 give the same answers.
    let base = ["distill-data", "--data", data.to_str().unwrap(), "--model", m.to_str().unwrap(), "--backend", "ndarray", "--max-new-tokens", "4", "--no-holdout"];
    let answers_of = |extra: &[&str]| {
        let all: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = Command::new(env!("CARGO_BIN_EXE_redrafter")).args(&all).env("REDRAFTER_CACHE", &cache).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let mut answers: Vec<(u64, serde_json::Value)> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|j| (j["id"].as_u64().unwrap(), j["answer_ids"].clone()))
            .collect();
        answers.sort_by_key(|a| a.0);
        // Removed, so the next call answers every prompt again.
        std::fs::remove_file(&path).unwrap();
        (path, answers)
    };
    // The tiny model's distribution is peaked (greedy and T = 1 both give one token throughout):
    // a high temperature flattens it, so that the draws differ and the checks below can fail.
    let sampled = ["--temperature", "100", "--seed", "5"];
    let (s1, one) = answers_of(&[&sampled[..], &["--batch-size", "1"]].concat());
    let (s3, three) = answers_of(&[&sampled[..], &["--batch-size", "3"]].concat());
    assert_eq!(s1, s3, "the batch size is not part of the address");
    assert_eq!(one.len(), 5);
    assert!(one.iter().any(|a| a.1 != one[0].1), "the draws differ between answers: {one:?}");
    assert_eq!(one, three, "a sampled answer does not depend on its batch");
    let (greedy_path, greedy) = answers_of(&["--batch-size", "3"]);
    assert_eq!(greedy_path, first, "greedy keeps its address");
    assert_ne!(s1, first, "sampled answers are another file");
    assert_ne!(one, greedy, "a temperature samples, it does not take the argmax");
    let (s6, other) = answers_of(&["--temperature", "100", "--seed", "6", "--batch-size", "3"]);
    assert_ne!(s6, s1, "another seed is another file");
    assert_ne!(other, one, "another seed draws other answers");
    let (code, _, stderr) = run(&["distill-data", "--temperature=-1", "--model", m.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("temperature must be >= 0"), "{stderr}");

    std::fs::write(dir.join("text.txt"), "plain text, no conversations").unwrap();
    let (code, _, stderr) = run(&["distill-data", "--data", "mt-bench", "--out", dir.join("x.jsonl").to_str().unwrap(), "--model", m.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--data mt-bench: MT-Bench is what the hold-out removes; add --no-holdout"), "{stderr}");
    let (code, _, stderr) = run(&["distill-data", "--data", dir.join("text.txt").to_str().unwrap(), "--out", dir.join("x.jsonl").to_str().unwrap(), "--model", m.to_str().unwrap(), "--no-holdout"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("needs conversations"), "{stderr}");
}

/// The README's main command: the default model with the drafter bundled for it, token for token
/// the autoregressive output, and the drafter really drafting (τ above one).
#[test]
#[cfg_attr(redrafter_no_real_model, ignore = "REDRAFTER_SKIP_REAL_MODEL is set")]
fn default_model_uses_the_bundled_drafter() {
    let base = ["generate", "Explain what a hash table is.", "--max-new-tokens", "48", "--json", "--backend", "flex"];
    let json = |extra: &[&str]| -> serde_json::Value {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(stdout.trim()).unwrap()
    };
    let rd = json(&[]);
    let ar = json(&["--autoregressive"]);
    assert!(rd["stats"]["strategy"].as_str().unwrap().starts_with("redrafter"), "{}", rd["stats"]["strategy"]);
    assert!(ar["stats"]["strategy"].as_str().unwrap().starts_with("autoregressive"), "{}", ar["stats"]["strategy"]);
    assert_eq!(rd["tokens"], ar["tokens"]);
    let tau = rd["stats"]["tau"].as_f64().unwrap();
    assert!(tau > 1.05, "the bundled drafter accepted almost nothing: tau {tau}");
}

/// `--weights` decides how the LLM is held, and the JSON says what each kind of weight became.
#[test]
fn weight_format_is_chosen_and_reported() {
    let m = tiny_model("weights");
    for (w, want) in [
        ("native", "Q8_0 projections, Q8_0 head"),
        ("native-q8", "Q8_0 projections, Q8_0 head, 8-bit activations"),
        ("f16", "F16 projections, F16 head"),
        ("f32", "F32 projections, F32 head"),
    ] {
        let (code, stdout, stderr) = run(&["generate", "the weather", "--model", m.to_str().unwrap(), "--max-new-tokens", "3", "--json", "--weights", w]);
        assert_eq!(code, 0, "{w}: {stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["stats"]["weights"]["requested"], w);
        assert_eq!(v["stats"]["weights"]["formats"], want, "{w}");
        assert!(v["stats"]["weights"]["step_weight_mb"].as_f64().unwrap() > 0.0);
    }
    let (code, _, stderr) = run(&["generate", "hi", "--model", m.to_str().unwrap(), "--weights", "q2_k"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown weight format `q2_k`"), "{stderr}");
}

/// Hostile options (issue "Hardening"): each of these once killed the process, overflowed, or
/// answered with garbage. Each must now be a clear `error:` line and exit code 1, or a correct run.
#[test]
fn absurd_beams_and_memory_limits_are_refused_with_the_bytes() {
    let m = tiny_model("budget");
    let d = tiny_drafter("budget", 64);
    let (m, d) = (m.to_str().unwrap(), d.to_str().unwrap());
    // Used to allocate a 300000-token tree until the OOM killer ended the process.
    let (code, _, stderr) = run(&["generate", "hi", "--model", m, "--drafter", d, "--beam-width", "100000", "--backend", "ndarray"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("300000 token(s) per step") && stderr.contains("above the memory limit"), "{stderr}");
    // A small limit refuses the model itself, and says how to raise it.
    let (code, _, stderr) = run(&["generate", "hi", "--model", m, "--memory-limit", "64K", "--backend", "ndarray"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("above the memory limit of 64.0 KiB") && stderr.contains("--memory-limit"), "{stderr}");
    let (code, _, stderr) = run(&["generate", "hi", "--model", m, "--memory-limit", "lots"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`lots` is not a size"), "{stderr}");
    // The environment variable works as the option does.
    let out = Command::new(env!("CARGO_BIN_EXE_redrafter"))
        .args(["generate", "hi", "--model", m, "--backend", "ndarray"])
        .env("REDRAFTER_MEMORY_LIMIT", "100K")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("above the memory limit of 100.0 KiB"), "{stderr}");
}

#[test]
fn empty_stop_strings_tiny_temperatures_and_unbounded_lengths() {
    let m = tiny_model("hostile-opts");
    let m = m.to_str().unwrap();
    // Used to end every row after one token with empty text.
    let (code, _, stderr) = run(&["generate", "the weather", "--model", m, "--stop", ""]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("a stop string must not be empty"), "{stderr}");
    let json = |extra: &[&str]| -> serde_json::Value {
        let args: Vec<&str> = ["generate", "the weather", "--model", m, "--json", "--backend", "ndarray"].iter().chain(extra).copied().collect();
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(stdout.trim()).unwrap()
    };
    // Used to turn the logits into NaN and pick the least likely token: now the greedy answer.
    let greedy = json(&["--max-new-tokens", "8"]);
    let tiny_t = json(&["--max-new-tokens", "8", "--temperature", "1e-38", "--seed", "3"]);
    assert_eq!(tiny_t["tokens"], greedy["tokens"]);
    // usize::MAX new tokens used to overflow `prompt + max_new_tokens`: now "until the context is full".
    let all = json(&["--max-new-tokens", &usize::MAX.to_string()]);
    assert_eq!(all["finish_reason"], "context_limit", "{}", all["finish_reason"]);
    let used = all["prompt_tokens"].as_u64().unwrap() + all["tokens"].as_array().unwrap().len() as u64;
    assert_eq!(used, 256, "the tiny model's context is 256 positions");
}

/// A machine without a Vulkan driver: `--backend wgpu` says what to install instead of panicking
/// inside cubecl ("No possible adapter available"). The loader is pointed at a driver manifest
/// that does not exist, which is what a machine without a driver looks like to it.
#[cfg(all(feature = "wgpu", target_os = "linux"))]
#[test]
fn wgpu_without_a_driver_is_an_error_with_the_fix() {
    let m = tiny_model("no-vulkan");
    for backend in ["wgpu", "wgpu-fusion"] {
        let out = Command::new(env!("CARGO_BIN_EXE_redrafter"))
            .args(["generate", "hi", "--model", m.to_str().unwrap(), "--backend", backend, "--max-new-tokens", "2"])
            .env("VK_ICD_FILENAMES", "/nonexistent/no_driver_icd.json")
            .env("VK_DRIVER_FILES", "/nonexistent/no_driver_icd.json")
            .env("WGPU_BACKEND", "vulkan")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{backend}: {stderr}");
        assert!(!stderr.contains("panicked"), "{backend}: {stderr}");
        assert!(stderr.contains(&format!("backend `{backend}` cannot start")) && stderr.contains("mesa-vulkan-drivers"), "{backend}: {stderr}");
        // The cause, reported from cubecl's own thread, not just the caller's RecvError.
        assert!(stderr.contains("No possible adapter"), "{backend}: {stderr}");
    }
}

/// `--backend cuda` on a machine without an NVIDIA driver: an error with the fix, no panic.
#[cfg(feature = "cuda")]
#[test]
#[cfg_attr(not(redrafter_no_cuda), ignore = "this machine has a GPU (REDRAFTER_TEST_CUDA=1)")]
fn cuda_without_a_gpu_is_an_error_with_the_fix() {
    let m = tiny_model("no-cuda");
    for backend in ["cuda", "cuda-fusion"] {
        let (code, _, stderr) = run(&["generate", "hi", "--model", m.to_str().unwrap(), "--backend", backend, "--max-new-tokens", "2"]);
        assert_eq!(code, 1, "{backend}: {stderr}");
        assert!(!stderr.contains("panicked"), "{backend}: {stderr}");
        assert!(stderr.contains(&format!("backend `{backend}` cannot start")) && stderr.contains("NVIDIA GPU"), "{backend}: {stderr}");
    }
}

/// `redrafter bench` end to end on the tiny model: two CPU backends and one that cannot run here,
/// two draft sources, two grids, two batch sizes; the report validates against the schema, greedy
/// ReDrafter matches autoregressive decoding in every cell, a rerun resumes, and `bench compare`
/// merges two results and flags their differing settings.
#[test]
fn bench_runs_every_cell_resumes_and_compares() {
    use redrafter_bench::harness::schema::validate_report;
    let m = tiny_model("bench");
    let d = tiny_drafter("bench", 64);
    let dir = m.parent().unwrap().to_path_buf();
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"the weather\", \"category\": \"a\"}\n{\"prompt\": \"the the the the\", \"category\": \"b\"}\n{\"prompt\": \"hello\", \"raw\": true}\n").unwrap();
    let out = dir.join("bench-out");
    let drafter = format!("rnn={}", d.display());
    let args = |out: &std::path::Path, tokens: &str| -> Vec<String> {
        [
            "bench", "--model", m.to_str().unwrap(), "--prompts", prompts.to_str().unwrap(), "--drafter", &drafter, "--drafter", "pl=prompt-lookup",
            "--backends", "flex,ndarray,cuda", "--grids", "1x2,2x3", "--batch", "1,2", "--new-tokens", tokens, "--runs", "2", "--out", out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run_s = |a: &[String]| run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, stdout, stderr) = run_s(&args(&out, "6"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("| flex | 1 | native | 2 | 0 | rnn 2x3 |"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let errors = validate_report(&report);
    assert!(errors.is_empty(), "{errors:?}");
    let cells = report["cells"].as_array().unwrap();
    // 2 backends × 2 batch sizes × (autoregressive + 2 sources × 2 grids).
    assert_eq!(cells.len(), 20);
    for c in cells {
        assert_eq!(c["runs"], 2);
        if c["strategy"] == "redrafter" {
            assert_eq!(c["mismatches"], 0, "greedy ReDrafter must equal autoregressive decoding: {c}");
            assert!(c["speedup"].as_f64().unwrap() > 0.0 && c["tau"].as_f64().unwrap() >= 1.0);
            assert_eq!(c["acceptance_by_position"].as_array().unwrap().len(), c["length"].as_u64().unwrap() as usize - 1);
        } else {
            assert_eq!(c["tau"], 1.0);
        }
        assert_eq!(c["new_tokens"], 3 * 6);
        assert!(c["tpot_ms"]["p50"].as_f64().unwrap() > 0.0);
    }
    let cuda = report["backends"].as_array().unwrap().iter().find(|b| b["backend"] == "cuda").expect("cuda reported");
    assert_eq!(cuda["status"], "skipped");
    assert!(cuda["reason"].as_str().unwrap().to_lowercase().contains("cuda"), "{cuda}");
    for f in ["bench.csv", "bench.md", "speedup.svg", "tau.svg", "acceptance.svg", "batch.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("bench.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21);
    let lines = || std::fs::read_to_string(out.join("runs.jsonl")).unwrap().lines().filter(|l| l.contains("\"run\"")).count();
    assert_eq!(lines(), 40);

    // A rerun with the same settings measures nothing again.
    let (code, _, stderr) = run_s(&args(&out, "6"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines(), 40, "a rerun must resume, not remeasure");
    // --report-only on a directory whose run stopped early: the report holds what was recorded.
    let runs_path = out.join("runs.jsonl");
    let all = std::fs::read_to_string(&runs_path).unwrap();
    let kept: Vec<&str> = all.lines().filter(|l| !l.contains("\"ndarray\"")).collect();
    std::fs::write(&runs_path, kept.join("\n") + "\n").unwrap();
    let mut only = args(&out, "6");
    only.push("--report-only".into());
    let (code, _, stderr) = run_s(&only);
    assert_eq!(code, 0, "{stderr}");
    let partial: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    assert_eq!(partial["cells"].as_array().unwrap().len(), 10, "flex's cells only");
    assert_eq!(std::fs::read_to_string(&runs_path).unwrap().lines().count(), kept.len(), "--report-only measures nothing");
    // A restart after ndarray's autoregressive cells were recorded but not its ReDrafter cells:
    // the rerun measures only the ReDrafter cells, still checked against autoregressive tokens.
    let without_rd: Vec<&str> = all.lines().filter(|l| !(l.contains("\"ndarray\"") && l.contains("\"redrafter\""))).collect();
    std::fs::write(&runs_path, without_rd.join("\n") + "\n").unwrap();
    let (code, _, stderr) = run_s(&args(&out, "6"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines(), 40, "only the missing ReDrafter runs are measured again");
    let resumed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    assert_eq!(resumed["cells"].as_array().unwrap().len(), 20);
    assert!(resumed["cells"].as_array().unwrap().iter().filter(|c| c["strategy"] == "redrafter").all(|c| c["mismatches"] == 0));
    std::fs::write(&runs_path, all).unwrap();

    // Other settings into another directory; compare flags the difference.
    let out2 = dir.join("bench-out-2");
    let mut a2 = args(&out2, "4");
    a2.splice(a2.iter().position(|s| s == "flex,ndarray,cuda").unwrap()..=a2.iter().position(|s| s == "flex,ndarray,cuda").unwrap(), ["ndarray".to_string()]);
    let (code, _, stderr) = run_s(&a2);
    assert_eq!(code, 0, "{stderr}");
    let cmp = dir.join("cmp");
    let (code, stdout, stderr) = run(&["bench", "compare", out.to_str().unwrap(), out2.to_str().unwrap(), "--out", cmp.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("bench-out/flex") && stdout.contains("bench-out-2/ndarray"), "{stdout}");
    assert!(stdout.contains("settings differ: new_tokens"), "{stdout}");
    for f in ["compare.md", "compare.csv", "compare.svg"] {
        assert!(cmp.join(f).is_file(), "{f} missing");
    }

    // Bad axes are refused before anything runs.
    for (flag, value, says) in [("--grids", "1x1", "beam length"), ("--batch", "4", "larger than"), ("--weights", "q5", "weight format")] {
        let mut a = args(&dir.join("bad"), "4");
        let at = a.iter().position(|s| s == flag).map(|i| i + 1);
        match at {
            Some(i) => a[i] = value.to_string(),
            None => a.extend([flag.to_string(), value.to_string()]),
        }
        let (code, _, stderr) = run_s(&a);
        assert_eq!(code, 1, "{flag} {value}");
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
    let (code, _, stderr) = run(&["bench", "compare", out.to_str().unwrap(), "--out", cmp.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(!stderr.is_empty());
}

/// Copy first in the harness: the report splits out the copying rows' share and acceptance.
#[test]
fn bench_reports_the_copying_rows_of_copy_first() {
    use redrafter_bench::harness::schema::validate_report;
    let m = tiny_model("benchcopy");
    let d = tiny_drafter("benchcopy", 64);
    let dir = m.parent().unwrap().to_path_buf();
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"the the the the the\", \"category\": \"a\"}\n{\"prompt\": \"one two one two one\", \"category\": \"b\"}\n").unwrap();
    let out = dir.join("bench-copy");
    let drafter = format!("first={}+lookup", d.display());
    let (code, stdout, stderr) = run(&[
        "bench", "--model", m.to_str().unwrap(), "--prompts", prompts.to_str().unwrap(), "--drafter", &drafter, "--backends", "flex",
        "--grids", "1x3", "--new-tokens", "12", "--runs", "1", "--out", out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let errors = validate_report(&report);
    assert!(errors.is_empty(), "{errors:?}");
    let cells = report["cells"].as_array().unwrap();
    let rd = cells.iter().find(|c| c["strategy"] == "redrafter").expect("a ReDrafter cell");
    assert_eq!(rd["mismatches"], 0, "{rd}");
    let share = rd["copied_share"].as_f64().expect("copy first reports its copying rows");
    assert!(share > 0.0 && share <= 1.0, "prompts that repeat themselves copy: {rd}");
    let copies = rd["copy_acceptance_by_position"].as_array().unwrap();
    assert!(!copies.is_empty() && copies.len() <= 2 && copies.iter().all(|a| (0.0..=1.0).contains(&a.as_f64().unwrap())), "{rd}");
    let ar = cells.iter().find(|c| c["strategy"] == "autoregressive").unwrap();
    assert!(ar["copied_share"].is_null() && ar["copy_acceptance_by_position"].as_array().unwrap().is_empty(), "{ar}");
    assert!(stdout.contains("(copies "), "{stdout}");
}

#[test]
fn bench_measures_peers_as_baselines_and_skips_a_missing_one() {
    use redrafter_bench::harness::schema::validate_report;
    let m = tiny_model("peers");
    let dir = m.parent().unwrap().to_path_buf();
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"the weather\", \"category\": \"a\"}\n{\"prompt\": \"hello\", \"raw\": true}\n").unwrap();
    // The real llama.cpp script on a stand-in `llama_cpp` module (a "model" that predicts the
    // previous token + 1), run by the real python3 through a wrapper that puts the stand-in first
    // on the module path: the harness's own script, records and report are what is tested.
    let stub = dir.join("stub");
    std::fs::create_dir_all(stub.join("llama_cpp")).unwrap();
    std::fs::write(
        stub.join("llama_cpp/__init__.py"),
        "__version__ = 'stand-in'\nLLAMA_FTYPE_MOSTLY_F16, LLAMA_FTYPE_ALL_F32 = 1, 0\n\
         class Llama:\n    def __init__(self, model_path, **kw):\n        assert open(model_path, 'rb').read(4) == b'GGUF'\n        self.metadata, self.ctx = {}, []\n\
         \x20   def tokenize(self, text, add_bos=False, special=True):\n        return list(text)\n\
         \x20   def reset(self):\n        self.ctx = []\n\
         \x20   def eval(self, ids):\n        self.ctx.extend(ids)\n\
         \x20   def sample(self, temp=0.0, top_k=1):\n        return (self.ctx[-1] + 1) % 50\n",
    )
    .unwrap();
    std::fs::write(stub.join("llama_cpp/llama_chat_format.py"), "class Jinja2ChatFormatter:\n    pass\n").unwrap();
    let python = dir.join("python-with-stand-in");
    std::fs::write(&python, format!("#!/bin/sh\nPYTHONPATH={} exec python3 \"$@\"\n", stub.display())).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&python).status().unwrap();
    let out = dir.join("bench-peers");
    let llama = format!("llama-cpp={}", python.display());
    let args = [
        "bench", "--model", m.to_str().unwrap(), "--prompts", prompts.to_str().unwrap(), "--drafter", "none", "--backends", "flex",
        "--new-tokens", "5", "--runs", "2", "--peer", &llama, "--peer", "transformers=/nonexistent/python", "--out", out.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("| llama.cpp | 1 | native | 1 | 0 | autoregressive |"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let errors = validate_report(&report);
    assert!(errors.is_empty(), "{errors:?}");
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "flex's autoregressive cell and llama.cpp's");
    let peer = cells.iter().find(|c| c["backend"] == "llama.cpp").expect("the llama.cpp cell");
    assert_eq!((peer["runs"].as_u64(), peer["new_tokens"].as_u64(), peer["tau"].as_f64()), (Some(2), Some(10), Some(1.0)), "{peer}");
    assert!(peer["decode_tokens_per_second"]["median"].as_f64().unwrap() > 0.0, "{peer}");
    assert_eq!(peer["tau_by_category"]["a"], 1.0, "{peer}");
    let backends = report["backends"].as_array().unwrap();
    let ready = backends.iter().find(|b| b["backend"] == "llama.cpp").unwrap();
    assert_eq!(ready["status"], "ok", "{ready}");
    assert!(ready["weights"][0]["formats"].as_str().unwrap().contains("stand-in"), "{ready}");
    let missing = backends.iter().find(|b| b["backend"] == "transformers").expect("transformers reported");
    assert_eq!(missing["status"], "skipped");
    assert!(missing["reason"].as_str().unwrap().contains("/nonexistent/python"), "{missing}");
    assert_eq!(report["settings"]["peers"].as_array().unwrap().len(), 2);
    // A rerun measures no peer run again.
    let count = || std::fs::read_to_string(out.join("runs.jsonl")).unwrap().lines().filter(|l| l.contains("\"run\"") && l.contains("llama.cpp")).count();
    assert_eq!(count(), 2);
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(count(), 2, "a rerun must resume, not remeasure");
    let (code, _, stderr) = run(&["bench", "--model", m.to_str().unwrap(), "--prompts", prompts.to_str().unwrap(), "--drafter", "none", "--peer", "vllm=python3", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--peer `vllm=python3`"), "{stderr}");
}
