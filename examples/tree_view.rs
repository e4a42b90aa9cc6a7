//! One ReDrafter step made visible: the W × L beams the drafter proposed, the prefix-deduplicated
//! tree the LLM verified in one forward, and the path it accepted, drawn as an SVG.
//!
//!     cargo run --release -p redrafter-examples --example tree_view -- \
//!         [--prompt "Write a haiku about rain."] [--width 4] [--length 4] [--step 3] [--out tree.svg] [--tiny]
//!
//! Default model and bundled drafter (flex, greedy); `--tiny` uses a seeded random tiny model and
//! drafter instead (no download; what CI runs). The left panel is the grid of beams, one row per
//! beam, the accepted beam's accepted tokens in green and its first rejected token in red; the
//! right panel is the tree: one node per distinct prefix, so beams that share a start share
//! nodes, with the accepted path in green. The title gives W·L grid tokens against tree nodes,
//! the saving of prefix deduplication (docs/tree.md).

#[path = "common/mod.rs"]
mod common;

use common::*;
use redrafter::backends::FlexBackend;
use redrafter::{BeamConfig, GenerationConfig, Generator, ReDrafter, StepRecord};
use redrafter_io::TextTokenizer;

fn main() -> Result<(), BoxError> {
    let device = Default::default();
    let beams = BeamConfig { width: arg_parse("--width", "4")?, length: arg_parse("--length", "4")? };
    let step: usize = arg_parse("--step", "3")?;
    let out = std::path::PathBuf::from(arg("--out", "tree.svg"));
    let (loaded, drafter) = model_and_drafter::<FlexBackend>(&device, flag("--tiny"))?;
    let tok = &loaded.tokenizer;
    let prompt = chat(tok, &arg("--prompt", "Write a haiku about rain."))?;

    let mut redrafter = ReDrafter::new(drafter, beams)?.record_steps(true);
    let config = GenerationConfig { max_new_tokens: 64, eos_ids: tok.eos.clone(), ..Default::default() };
    let output = Generator::new(&loaded.model, Some(tok)).generate(&mut redrafter, &[prompt], &config, None)?;
    let steps = redrafter.take_steps();
    let Some(record) = steps.get(step.min(steps.len().saturating_sub(1))) else {
        return Err("the generation took no ReDrafter step (the prompt ended at once)".into());
    };
    println!("{}", output.rows[0].text);
    let svg = draw(record, tok, step.min(steps.len() - 1))?;
    std::fs::write(&out, svg)?;
    let nodes = record.tree.packed_len[0];
    let a = &record.accepted[0];
    println!(
        "step {} of {}: {} beams x {} tokens = {} grid tokens, {} tree nodes; beam {} accepted {} of {} drafts -> {}",
        step.min(steps.len() - 1),
        steps.len(),
        record.beams.width,
        record.beams.len,
        record.beams.width * record.beams.len,
        nodes,
        a.beam,
        a.drafted,
        record.beams.len - 1,
        out.display()
    );
    Ok(())
}

/// Text of one token for a label: decoded, whitespace made visible, XML-escaped, at most 10 chars.
fn label(tok: &TextTokenizer, id: u32) -> String {
    let text = tok.decode(&[id]).unwrap_or_else(|_| format!("#{id}"));
    let text: String = text.replace(' ', "·").replace('\n', "⏎").chars().take(10).collect();
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The grid and the tree of row 0 of `r`, side by side.
fn draw(r: &StepRecord, tok: &TextTokenizer, step: usize) -> Result<String, BoxError> {
    let (w, len) = (r.beams.width, r.beams.len);
    let a = &r.accepted[0];
    let (cw, ch, gap) = (86.0, 30.0, 10.0);
    let grid_w = len as f64 * (cw + gap) + 40.0;
    // Tree nodes: slot -> (depth, token, parent slot), from every beam position.
    let nodes = r.tree.packed_len[0];
    let mut node: Vec<Option<(usize, u32, Option<usize>)>> = vec![None; nodes];
    for i in 0..w {
        for k in 0..len {
            let s = r.tree.node(0, i, k);
            let parent = (k > 0).then(|| r.tree.node(0, i, k - 1));
            node[s] = Some((k, r.beams.beam(0, i)[k], parent));
        }
    }
    let on_path: Vec<usize> = (0..=a.drafted).map(|k| r.tree.node(0, a.beam, k)).collect();
    // Rows of the tree: nodes in slot order at each depth.
    let mut row_at = vec![0usize; nodes];
    let mut per_depth = vec![0usize; len];
    for (s, n) in node.iter().enumerate() {
        if let Some((d, _, _)) = n {
            row_at[s] = per_depth[*d];
            per_depth[*d] += 1;
        }
    }
    let rows = w.max(per_depth.iter().copied().max().unwrap_or(1));
    let (width, height) = (2.0 * grid_w + 40.0, 90.0 + rows as f64 * (ch + gap));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"20\" y=\"22\" font-size=\"14\">step {step}: {w} beams x {len} tokens = {} grid tokens -> {nodes} tree nodes; beam {} accepted {} of {} drafts + bonus {:?}</text>\n\
         <text x=\"20\" y=\"50\">beams (column 0: the pending token)</text><text x=\"{}\" y=\"50\">verified tree (one node per distinct prefix)</text>\n",
        w * len,
        a.beam,
        a.drafted,
        len - 1,
        label(tok, a.bonus),
        grid_w + 40.0
    );
    let cell = |svg: &mut String, x: f64, y: f64, fill: &str, text: &str| {
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{cw}\" height=\"{ch}\" rx=\"4\" fill=\"{fill}\" stroke=\"#555\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{text}</text>\n",
            x + cw / 2.0,
            y + ch / 2.0 + 4.0
        ));
    };
    for i in 0..w {
        for k in 0..len {
            let fill = match (i == a.beam, k) {
                (true, k) if k <= a.drafted => "#b7e4b0",
                (true, k) if k == a.drafted + 1 => "#f4b6b6",
                _ => "#eeeeee",
            };
            cell(&mut svg, 20.0 + k as f64 * (cw + gap), 64.0 + i as f64 * (ch + gap), fill, &label(tok, r.beams.beam(0, i)[k]));
        }
    }
    let at = |s: usize| {
        let (d, _, _) = node[s].expect("every slot below packed_len is a beam position");
        (grid_w + 40.0 + d as f64 * (cw + gap), 64.0 + row_at[s] as f64 * (ch + gap))
    };
    for s in 0..nodes {
        if let Some((_, _, Some(p))) = node[s] {
            let ((x0, y0), (x1, y1)) = (at(p), at(s));
            let colour = if on_path.contains(&s) { "#2ca02c" } else { "#999" };
            svg.push_str(&format!(
                "<line x1=\"{}\" y1=\"{}\" x2=\"{x1}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
                x0 + cw,
                y0 + ch / 2.0,
                y1 + ch / 2.0
            ));
        }
    }
    for s in 0..nodes {
        let (x, y) = at(s);
        let (_, t, _) = node[s].expect("checked above");
        cell(&mut svg, x, y, if on_path.contains(&s) { "#b7e4b0" } else { "#eeeeee" }, &label(tok, t));
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}
