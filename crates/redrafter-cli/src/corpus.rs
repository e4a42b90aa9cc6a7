//! Training corpora as token sequences, one loader for every subcommand that reads them (`train`,
//! `draft-vocab`): `sharegpt` resolves to the pinned download, MT-Bench's first turns are held
//! out (they are the benchmark), and each conversation or document becomes an [`Example`].

use std::path::{Path, PathBuf};

use redrafter_io::fetch::{MT_BENCH_QUESTIONS, SHAREGPT, fetch};
use redrafter_io::{ChatTemplate, Message, TextTokenizer, load_mt_bench};
use redrafter_train::Example;
use redrafter_train::data::{Corpus, hold_out, read_corpus, tokenize_answered, tokenize_conversation, tokenize_text};

type BoxError = Box<dyn std::error::Error>;

/// `data` as a local path: `sharegpt` is fetched (sha256-checked) on first use; `mt-bench` is
/// MT-Bench's 80 first turns as one-message conversations (a JSONL written to the cache dir from
/// the sha256-checked questions), the prompts to answer when evaluating a drafter on the LLM's
/// own answers to the benchmark (`distill-data --data mt-bench --no-holdout`).
pub fn resolve(data: &Path) -> Result<PathBuf, BoxError> {
    if data.as_os_str() == "mt-bench" {
        return mt_bench_first_turns();
    }
    if data.as_os_str() != "sharegpt" {
        return Ok(data.to_path_buf());
    }
    let path = fetch(&SHAREGPT, &mut |what, done, total| eprint!("\r{what}: {} / {} MB   ", done >> 20, total >> 20))?;
    Ok(path)
}

/// What identifies `data` in a cache key: the pinned download's sha256 for `sharegpt`, else the
/// file's canonical path (a file that grows keeps its key).
pub fn source_id(data: &Path) -> String {
    if data.as_os_str() == "sharegpt" {
        format!("sharegpt {}", SHAREGPT.member_sha256)
    } else {
        std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf()).display().to_string()
    }
}

fn mt_bench_first_turns() -> Result<PathBuf, BoxError> {
    let q = load_mt_bench(&fetch(&MT_BENCH_QUESTIONS, &mut |_, _, _| {})?)?;
    let mut text = String::new();
    for turns in q.iter().filter_map(|q| q.turns.first()) {
        let line = serde_json::json!({ "messages": [{ "role": "user", "content": turns }] });
        text.push_str(&(line.to_string() + "\n"));
    }
    let path = redrafter_io::fetch::cache_dir().join("mt-bench").join("first_turns.jsonl");
    // Rewritten only when it differs, so its bytes (the distillation file's address) stay put.
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// Every turn of MT-Bench's questions (fetched, sha256-checked): the prompts held out of training.
pub fn mt_bench_turns() -> Result<Vec<String>, BoxError> {
    let q = load_mt_bench(&fetch(&MT_BENCH_QUESTIONS, &mut |_, _, _| {})?)?;
    Ok(q.into_iter().flat_map(|q| q.turns).collect())
}

/// The first `max_examples` conversations or documents of `data`, tokenized (`max_len` tokens
/// each; conversations through the model's chat template, targets = assistant tokens). With
/// `holdout`, conversations starting with an MT-Bench question are dropped first.
pub fn load_examples(tok: &TextTokenizer, data: &Path, max_examples: usize, max_len: usize, holdout: bool) -> Result<Vec<Example>, BoxError> {
    let path = resolve(data)?;
    match read_corpus(&path)? {
        Corpus::Conversations(convs) => conversation_examples(tok, convs, max_examples, holdout, |tpl, c| tokenize_conversation(tok, tpl, c, max_len)),
        Corpus::Answered(answered) => conversation_examples(tok, answered, max_examples, holdout, |tpl, a| tokenize_answered(tok, tpl, a, max_len)),
        Corpus::Text(mut docs) => {
            docs.truncate(max_examples);
            Ok(docs.iter().map(|d| tokenize_text(tok, d, max_len)).collect::<Result<_, _>>()?)
        }
    }
}

/// The first `max_examples` conversations (after the MT-Bench hold-out) through `tokenize`:
/// ShareGPT-style conversations and distilled answers alike.
fn conversation_examples<C, E>(
    tok: &TextTokenizer,
    mut convs: Vec<C>,
    max_examples: usize,
    holdout: bool,
    tokenize: impl Fn(&ChatTemplate, &C) -> Result<Example, E>,
) -> Result<Vec<Example>, BoxError>
where
    C: AsRef<[Message]>,
    E: Into<BoxError>,
{
    if holdout {
        let dropped = hold_out(&mut convs, &mt_bench_turns()?);
        eprintln!("held out {dropped} conversations that start with an MT-Bench question");
    }
    convs.truncate(max_examples);
    let tpl = tok.chat_template.as_ref().ok_or("the model has no chat template for conversation data")?;
    let mut out = Vec::with_capacity(convs.len());
    for (i, c) in convs.iter().enumerate() {
        out.push(tokenize(tpl, c).map_err(Into::into)?);
        if (i + 1) % 5000 == 0 {
            eprintln!("tokenized {} / {} conversations", i + 1, convs.len());
        }
    }
    Ok(out)
}

/// How often each token id of a `vocab_size` vocabulary is a target in `examples`.
pub fn target_counts(examples: &[Example], vocab_size: usize) -> Vec<u64> {
    let mut counts = vec![0u64; vocab_size];
    for e in examples {
        for (&t, _) in e.tokens.iter().zip(&e.target).filter(|(_, m)| **m) {
            if let Some(c) = counts.get_mut(t as usize) {
                *c += 1;
            }
        }
    }
    counts
}
