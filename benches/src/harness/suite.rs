//! Prompt suites: MT-Bench's first turns (8 categories), a raw-text suite (continuations without
//! a chat template), the code-editing set, or a user's JSONL file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BenchError;

/// One prompt: its text, the category τ is reported under, and whether it is used as is
/// (`raw`) or wrapped in the model's chat template as a user message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prompt {
    pub category: String,
    pub text: String,
    #[serde(default)]
    pub raw: bool,
}

const RAW_TEXT: &str = include_str!("../../prompts/raw_text.jsonl");
const CODE_EDIT: &str = include_str!("../../prompts/code_edit.jsonl");

/// The suites built into the binary (MT-Bench is fetched, see [`mt_bench`]).
pub const BUILT_IN: [&str; 2] = ["raw-text", "code-edit"];

/// A built-in suite by name.
pub fn built_in(name: &str) -> Option<Result<Vec<Prompt>, BenchError>> {
    match name {
        "raw-text" => Some(parse_jsonl(RAW_TEXT, Path::new("raw_text.jsonl (built in)"), true, "raw-text")),
        "code-edit" => Some(parse_jsonl(CODE_EDIT, Path::new("code_edit.jsonl (built in)"), false, "code-edit")),
        _ => None,
    }
}

/// A user's prompts: one JSON object per line with `prompt` (required), `category` and `raw`
/// (optional).
pub fn from_file(path: &Path) -> Result<Vec<Prompt>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|e| BenchError::file(path, e))?;
    parse_jsonl(&text, path, false, "prompts-file")
}

/// MT-Bench's first turns, in file order, with their categories.
pub fn mt_bench(question_file: &Path) -> Result<Vec<Prompt>, BenchError> {
    let qs = redrafter_io::mt_bench::load_mt_bench(question_file).map_err(|e| BenchError::Option(e.to_string()))?;
    Ok(qs.into_iter().map(|q| Prompt { category: q.category, text: q.turns[0].clone(), raw: false }).collect())
}

fn parse_jsonl(text: &str, path: &Path, raw: bool, category: &str) -> Result<Vec<Prompt>, BenchError> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| BenchError::file(path, format!("line {}: {e}", i + 1)))?;
        let prompt = v["prompt"].as_str().ok_or_else(|| BenchError::file(path, format!("line {}: no string \"prompt\"", i + 1)))?;
        if prompt.is_empty() {
            return Err(BenchError::file(path, format!("line {}: empty prompt", i + 1)));
        }
        out.push(Prompt {
            category: v["category"].as_str().unwrap_or(category).to_string(),
            text: prompt.to_string(),
            raw: v["raw"].as_bool().unwrap_or(raw),
        });
    }
    if out.is_empty() {
        return Err(BenchError::file(path, "no prompts"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_suites_parse_and_bad_lines_are_named() {
        let raw = built_in("raw-text").unwrap().unwrap();
        assert_eq!(raw.len(), 10);
        assert!(raw.iter().all(|p| p.raw));
        assert!(built_in("code-edit").unwrap().unwrap().iter().all(|p| !p.raw));
        let e = parse_jsonl("{\"prompt\": \"a\"}\n{\"text\": 1}\n", Path::new("f"), false, "x").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(parse_jsonl("\n", Path::new("f"), false, "x").is_err());
    }
}
