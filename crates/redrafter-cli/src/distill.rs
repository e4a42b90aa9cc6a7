//! `redrafter distill-data`: the paper's distillation data (spec §6.3). The LLM answers the first
//! user turn of each conversation greedily (or sampled, `--temperature`, each answer seeded by
//! its conversation id); the result is a JSONL of `{"id", "messages"}` that
//! `redrafter train --data` reads like any conversation file, so the drafter learns the LLM's own
//! continuations. Generation is batched and resumable: finished ids are read back from the output
//! and skipped, and every batch is appended and flushed as soon as it is done.
//!
//! Without `--out` the file lives in the cache dir under a content address of what decides its
//! answers (model bytes, weight format, prompt source, length limits, hold-out), so rerunning the
//! same command resumes it and a lost cache is rebuilt by it. Prompts are answered shortest
//! first within windows of 32 batches: a batch's prefill is right-padded to its longest prompt,
//! and on ShareGPT's ragged first turns corpus order spent most of the time on padding. Each
//! line also keeps the answer's token ids as generated (`answer_ids`) and why it ended
//! (`finish`): decoding the text and tokenizing it again need not give the same ids. An answer
//! that falls into a repetition loop stops there (`finish: "loop"`, unless `--keep-loops`) and is
//! stored up to the loop's start; `generated` counts the tokens it took to find the loop.
//!
//! `--later-turns` answers every user turn after a conversation's first instead, with the
//! conversation before it (the data's own answers included) as the prompt: ShareGPT has about
//! four later user turns for each first one, so the pool of distinct answers grows past the
//! first turns (which the drafter's accuracy on unseen answers needs, docs/training.md). Its
//! lines keep that context in `messages`; training takes only the LLM's answer as targets.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use redrafter::KernelBackend;
use redrafter::backends::{BackendKind, BackendTask, run_on};
use redrafter::{Autoregressive, GenerationConfig, Generator};
use redrafter_bench::cli_args::SamplingArgs;
use redrafter_io::Message;
use redrafter_train::data::{Corpus, HeldOut, hold_out, read_corpus};

type BoxError = Box<dyn std::error::Error>;

#[derive(Args, Clone)]
pub struct DistillArgs {
    /// Conversations whose first user turn becomes a prompt (`sharegpt` = the pinned download;
    /// `mt-bench` = MT-Bench's first turns, with `--no-holdout`, to evaluate drafters on the
    /// LLM's own answers to the benchmark: `train --eval-data`).
    #[arg(long, default_value = "sharegpt")]
    data: PathBuf,
    /// Output JSONL; an existing file is resumed. Default: the cache dir's
    /// `distill/<content address>.jsonl` (printed), so the same command resumes it.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    backend: Option<String>,
    /// Conversations to answer (the first N after the MT-Bench hold-out).
    #[arg(long, default_value_t = 2000)]
    max_examples: usize,
    /// Prompts generated together.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Prompts longer than this (in tokens, after the chat template) are skipped.
    #[arg(long, default_value_t = 256)]
    max_prompt_tokens: usize,
    /// Do not remove MT-Bench questions from the prompts (they are the benchmark; keep them out).
    #[arg(long)]
    no_holdout: bool,
    /// How the LLM's weights are held (as `generate --weights`): the answers are those of the
    /// model a user runs with this choice.
    #[arg(long, default_value = "native")]
    weights: redrafter_llama::WeightFormat,
    /// Keep generating answers that fall into a repetition loop (until EOS or the token limit).
    /// By default an answer stops once it loops (`generate --stop-loops`'s rule) and is stored
    /// up to where the loop starts: most of a small greedy model's long answers end in one, and
    /// loop tokens cost a decode step each while teaching the drafter little.
    #[arg(long)]
    keep_loops: bool,
    /// Answer every user turn after the first of each conversation, with the conversation before
    /// it (user turns and the data's own answers) as the prompt, instead of the first user turns.
    /// Ids count these turns in corpus order (a larger `--max-examples` keeps them); the file
    /// has its own address. Later turns carry long contexts: raise `--max-prompt-tokens`.
    #[arg(long)]
    later_turns: bool,
    /// `K/N`: answer only the prompts whose id is K modulo N, so that N processes (one per
    /// core) fill the same file together, taking turns by a file lock; the answers do not
    /// depend on it.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Sampled answers (`--temperature` above 0) get their own file: the sampling options are
    /// part of its address.
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub(crate) fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard {s:?}: expected K/N with K < N, e.g. 0/2");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if k >= n {
        return Err(bad());
    }
    Ok((k, n))
}

impl DistillArgs {
    fn stop_loops(&self) -> Option<redrafter::LoopStop> {
        (!self.keep_loops).then(redrafter::LoopStop::default)
    }

    fn sampling(&self) -> redrafter::SamplingConfig {
        self.sampling.config(redrafter::Acceptance::default())
    }

    /// The seed of conversation `id`'s answer: what a sampler gives request row `id`,
    /// whatever slot the answer takes in its batch.
    fn row_seed(&self, id: usize) -> u64 {
        redrafter::Sampler::row_seed(self.sampling.seed, id as u64)
    }
}

pub fn run(args: DistillArgs) -> Result<(), BoxError> {
    let kind = BackendKind::default_for(args.backend.as_deref())?;
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    // Checked before the model loads: a bad sampling option is an error at once.
    args.sampling().validate()?;
    let model = crate::model_path::resolve(args.model.clone())?;
    run_on(kind, Task { args, model, kind })?
}

struct Task {
    args: DistillArgs,
    model: PathBuf,
    kind: BackendKind,
}

#[derive(serde::Deserialize)]
struct Done {
    id: usize,
}

impl BackendTask for Task {
    type Output = Result<(), BoxError>;

    fn run<B: KernelBackend>(self, device: B::Device) -> Self::Output {
        let Task { args, model, kind } = self;
        let loaded = redrafter_llama::load_with::<B>(&model, &device, args.weights)?;
        let tok = &loaded.tokenizer;
        let tpl = tok.chat_template.as_ref().ok_or("the model has no chat template")?;
        if args.data.as_os_str() == "mt-bench" && !args.no_holdout {
            return Err("--data mt-bench: MT-Bench is what the hold-out removes; add --no-holdout to answer it (for evaluation, never for training)".into());
        }
        let data = crate::corpus::resolve(&args.data)?;
        let mut convs = match read_corpus(&data)? {
            Corpus::Conversations(c) => c,
            Corpus::Answered(a) => a.into_iter().map(|a| a.messages).collect(),
            Corpus::Text(_) => return Err(format!("{}: distillation needs conversations, not plain text", data.display()).into()),
        };
        let held_turns = if args.no_holdout { vec![] } else { crate::corpus::mt_bench_turns()? };
        hold_out(&mut convs, &held_turns);
        // A later turn may itself be a held-out question, or follow one: not answered.
        let held = HeldOut::new(&held_turns);
        convs.truncate(args.max_examples);
        let out_path = match &args.out {
            Some(p) => p.clone(),
            None => {
                let dir = redrafter_io::fetch::cache_dir().join("distill");
                std::fs::create_dir_all(&dir)?;
                dir.join(format!("{}.jsonl", &content_address(&args, &model, &data, kind)?[..16]))
            }
        };
        eprintln!("answers: {}", out_path.display());

        // Every process holds the file's lock while it reads it or appends a batch, so a reader
        // never sees another's batch half written. An unterminated last line is then a batch cut
        // off when a run was killed: it is ignored here and cut away before the next append.
        let mut out = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&out_path)?;
        let mut done = HashSet::new();
        out.lock_shared()?;
        let mut bytes = vec![];
        std::io::Read::read_to_end(&mut out, &mut bytes)?;
        out.unlock()?;
        // Cut as bytes: a torn line may end inside a multi-byte character.
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if end < bytes.len() {
            eprintln!("{}: ignoring an unfinished last line ({} bytes)", out_path.display(), bytes.len() - end);
            bytes.truncate(end);
        }
        let text = String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8: {e}", out_path.display()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let d: Done = serde_json::from_str(line).map_err(|e| format!("{}: line {}: {e}", out_path.display(), i + 1))?;
            done.insert(d.id);
        }
        // (id, the prompt's messages, prompt ids) still to answer.
        let mut todo = vec![];
        for (id, context) in prompt_contexts(&convs, args.later_turns, &held).into_iter().enumerate() {
            let Some(context) = context else { continue };
            if done.contains(&id) || args.shard.is_some_and(|(k, n)| id % n != k) {
                continue;
            }
            let ids = tok.encode(&tpl.render(context, true)?)?;
            if ids.len() <= args.max_prompt_tokens {
                todo.push((id, context, ids));
            }
        }
        // Within windows of 32 batches, shortest first (stable): similar lengths share a batch,
        // so the padded prefill wastes little, while a run stopped early still holds a sample of
        // the whole length range in corpus order rather than only the shortest prompts.
        for window in todo.chunks_mut(32 * args.batch_size) {
            window.sort_by_key(|(_, _, ids)| ids.len());
        }
        eprintln!("{} prompts answered already, {} to go", done.len(), todo.len());
        let bar = ProgressBar::new(todo.len() as u64).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} prompts (eta {eta}) {msg}").expect("template").progress_chars("=> "),
        );
        let generator = Generator::new(&loaded.model, Some(tok));
        let config = GenerationConfig {
            max_new_tokens: args.max_new_tokens,
            eos_ids: tok.eos.clone(),
            stop_loops: args.stop_loops(),
            sampling: args.sampling(),
            ..Default::default()
        };
        let (mut tokens, mut generated, t0) = (0usize, 0usize, std::time::Instant::now());
        let (mut prefill_s, mut decode_s) = (0f64, 0f64);
        for batch in todo.chunks(args.batch_size) {
            let prompts: Vec<Vec<u32>> = batch.iter().map(|(_, _, ids)| ids.clone()).collect();
            let config = GenerationConfig { row_seeds: batch.iter().map(|(id, _, _)| args.row_seed(*id)).collect(), ..config.clone() };
            let result = generator.generate(&mut Autoregressive, &prompts, &config, None)?;
            // One append per batch, under the file's lock: with `--shard`, several processes
            // append to the same file.
            let mut lines = String::new();
            for ((id, context, _), row) in batch.iter().zip(&result.rows) {
                // A looping answer is kept up to where its loop starts: the ids before it are still
                // exactly the LLM's own continuation, and its text is decoded from them.
                let (ids, text) = match row.loop_start {
                    Some(start) => (&row.tokens[..start], tok.decode(&row.tokens[..start])?),
                    None => (&row.tokens[..], row.text.clone()),
                };
                let messages: Vec<Message> = context.iter().cloned().chain([Message::new("assistant", &text)]).collect();
                let line = serde_json::json!({
                    "id": id, "messages": messages, "answer_ids": ids, "finish": row.finish, "generated": row.tokens.len()
                });
                lines.push_str(&format!("{line}\n"));
                tokens += ids.len();
                generated += row.tokens.len();
            }
            append_whole_lines(&mut out, lines.as_bytes())?;
            (prefill_s, decode_s) = (prefill_s + result.stats.prefill_seconds, decode_s + result.stats.decode_seconds);
            bar.inc(batch.len() as u64);
            let rate = generated as f64 / t0.elapsed().as_secs_f64();
            let msg = format!("{tokens} tokens kept of {generated} generated | {rate:.1} tok/s | prefill {:.0}% of the time", 100.0 * prefill_s / (prefill_s + decode_s).max(1e-9));
            bar.set_message(msg.clone());
            if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("{} / {} prompts | {msg}", bar.position(), todo.len());
            }
        }
        bar.finish();
        eprintln!("wrote {} new answers, {tokens} tokens kept of {generated} generated", todo.len());
        println!("{}", out_path.display());
        Ok(())
    }
}

/// The prompts to answer, in corpus order (an entry's index is its answer's id): each
/// conversation's first user turn alone (`None` for a conversation without one, so that ids stay
/// conversation indices), or with `later` every later user turn with the messages before it
/// (`None` where one of its user turns is `held` out: the id stays taken).
fn prompt_contexts<'a, C: AsRef<[Message]>>(convs: &'a [C], later: bool, held: &HeldOut) -> Vec<Option<&'a [Message]>> {
    let mut out = vec![];
    for conv in convs {
        let conv = conv.as_ref();
        let mut users = conv.iter().enumerate().filter(|(_, m)| m.role == "user").map(|(i, _)| i);
        if !later {
            out.push(users.next().map(|i| std::slice::from_ref(&conv[i])));
            continue;
        }
        // Each user turn is compared once: after a held-out one, every later context holds it.
        let mut asked_held = false;
        for (k, i) in users.enumerate() {
            asked_held |= held.contains(&conv[i].content);
            if k > 0 {
                out.push(Some(&conv[..=i]).filter(|_| !asked_held));
            }
        }
    }
    out
}

/// sha256 (hex) over everything that decides the answers: the model's bytes, the weight format,
/// the prompt source, the length limits, the hold-out and the backend. `--max-examples` and
/// `--batch-size` are left out: answers do not depend on them, and a larger `--max-examples`
/// extends the same file.
fn content_address(args: &DistillArgs, model: &std::path::Path, data: &std::path::Path, kind: BackendKind) -> Result<String, BoxError> {
    // The pinned download by its sha, a local file by its bytes: the answers follow the prompts'
    // contents, not a path (unlike the hidden-state cache's `corpus::source_id`).
    // (`mt-bench` resolves to a file written from the sha-checked questions: its bytes.)
    let data_id = if args.data.as_os_str() == "sharegpt" {
        redrafter_io::fetch::SHAREGPT.member_sha256.to_string()
    } else {
        crate::model_path::identity(data)?
    };
    // Greedy answers keep the address of the runs before sampling existed ("greedy").
    let s = &args.sampling;
    let decoding = if s.temperature == 0.0 {
        "greedy".to_string()
    } else {
        format!("sampled temperature {} top_k {} top_p {} seed {} per-id", s.temperature, s.top_k, s.top_p, s.seed)
    };
    let mut spec = format!(
        "redrafter-distill-v1\nmodel {}\nweights {:?}\ndata {data_id}\nmax_new_tokens {}\nmax_prompt_tokens {}\nholdout {}\n{decoding}\n",
        crate::model_path::identity(model)?,
        args.weights,
        args.max_new_tokens,
        args.max_prompt_tokens,
        !args.no_holdout
    );
    if args.later_turns {
        spec.push_str("turns later\n");
    }
    // Added only when on, so that `--keep-loops` keeps the address (and file) of the runs before it.
    if let Some(r) = args.stop_loops() {
        spec.push_str(&format!("stop_loops ngram {} window {} max_repeats {}\n", r.ngram, r.window, r.max_repeats));
    }
    // Backends round differently (ndarray's own attention and norms; f32 weights and other
    // kernels on a GPU, where `--weights native` means f32), so a near tie may break another way
    // and the answers differ. Added for every backend but Flex, the default, so the files made
    // before keep their addresses.
    if kind != BackendKind::Flex {
        spec.push_str(&format!("backend {}\n", kind.name()));
    }
    Ok(crate::model_path::sha256_hex(spec.as_bytes()))
}

/// Appends `lines` under the file's exclusive lock, first cutting an unterminated last line (a
/// batch of a run that was killed while writing it: live writers hold the lock).
fn append_whole_lines(out: &mut std::fs::File, lines: &[u8]) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    out.lock()?;
    let result = (|| {
        let len = out.metadata()?.len();
        let mut end = len;
        // Back to just after the last newline, a few KiB at a time.
        let mut buf = vec![0u8; 4096];
        while end > 0 {
            let at = end.saturating_sub(buf.len() as u64);
            let chunk = &mut buf[..(end - at) as usize];
            out.seek(SeekFrom::Start(at))?;
            out.read_exact(chunk)?;
            match chunk.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    end = at + i as u64 + 1;
                    break;
                }
                None => end = at,
            }
        }
        if end < len {
            out.set_len(end)?;
        }
        out.write_all(lines)?;
        out.flush()
    })();
    out.unlock()?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_first_turns_or_later_turns_with_their_context() {
        let m = |r: &str, c: &str| Message::new(r, c);
        let convs = vec![
            vec![m("user", "a"), m("assistant", "b"), m("user", "c"), m("assistant", "d"), m("user", "e")],
            vec![m("assistant", "x")],
            vec![m("user", "f"), m("assistant", "g"), m("user", "held  question")],
        ];
        let none = HeldOut::new(&[]);
        // Each prompt as its messages' contents joined by "|".
        let contents = |p: Option<&[Message]>| p.map(|c| c.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("|"));
        let first: Vec<_> = prompt_contexts(&convs, false, &none).into_iter().map(contents).collect();
        assert_eq!(first, [Some("a".into()), None, Some("f".into())], "ids stay conversation indices");
        let later: Vec<_> = prompt_contexts(&convs, true, &none).into_iter().map(contents).collect();
        assert_eq!(later, [Some("a|b|c".into()), Some("a|b|c|d|e".into()), Some("f|g|held  question".into())]);
        let held = HeldOut::new(&["held question".into()]);
        let later: Vec<_> = prompt_contexts(&convs, true, &held).into_iter().map(contents).collect();
        assert_eq!(later.len(), 3, "a held-out turn keeps its id");
        assert_eq!(later[2], None, "a held-out later turn is not answered");
    }
}
