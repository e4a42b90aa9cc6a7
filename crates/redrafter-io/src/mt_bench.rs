//! MT-Bench questions (`question.jsonl`: one JSON object per line with `question_id`,
//! `category` and `turns`), the prompts ReDrafter is benchmarked on.

use std::path::Path;

use serde::Deserialize;

use crate::error::{IoError, Result, io_err};

#[derive(Debug, Clone, Deserialize)]
pub struct MtBenchQuestion {
    pub question_id: u64,
    pub category: String,
    pub turns: Vec<String>,
}

/// Reads every question; a malformed line is an error naming its line number.
pub fn load_mt_bench(path: &Path) -> Result<Vec<MtBenchQuestion>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut out = vec![];
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let q: MtBenchQuestion = serde_json::from_str(line)
            .map_err(|e| IoError::Corrupt { path: path.to_path_buf(), what: format!("line {}: {e}", i + 1) })?;
        if q.turns.is_empty() {
            return Err(IoError::Corrupt { path: path.to_path_buf(), what: format!("line {}: no turns", i + 1) });
        }
        out.push(q);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_bad_lines() {
        let dir = std::env::temp_dir().join(format!("redrafter-mtb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("q.jsonl");
        std::fs::write(&p, "{\"question_id\": 81, \"category\": \"writing\", \"turns\": [\"a\", \"b\"]}\n\n").unwrap();
        let q = load_mt_bench(&p).unwrap();
        assert_eq!((q.len(), q[0].turns[0].as_str()), (1, "a"));
        std::fs::write(&p, "{\"question_id\": 81}\n").unwrap();
        assert!(load_mt_bench(&p).unwrap_err().to_string().contains("line 1"));
    }
}
