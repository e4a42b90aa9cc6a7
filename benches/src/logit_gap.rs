//! How far each weight format's logits are from the f32 path's, on the default model (Flex):
//! the prompt and the f32 path's own greedy answer are run as one teacher-forced forward per
//! format, and every answer position's logits are compared with the f32 ones (max and mean
//! |Δlogit|, top-1 agreement), then each format decodes greedily on its own and the first token
//! where it leaves the f32 answer is reported.
//!
//!     cargo run --release --all-features -p redrafter-bench --bin logit_gap -- --weights native,native-q8,f16

use std::path::PathBuf;

use burn::tensor::Tensor;
use clap::Parser;
use redrafter::backends::FlexBackend;
use redrafter::sampling::argmax;
use redrafter::{Autoregressive, GenerationConfig, Generator};
use redrafter_io::Message;
use redrafter_io::fetch::{SMOLLM2_135M_INSTRUCT, fetch};
use redrafter_llama::{BlockInput, LoadedModel, WeightFormat, load_with};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "What is the capital of France?")]
    prompt: String,
    /// Tokens of the f32 answer to compare over.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Formats to compare with f32, comma-separated.
    #[arg(long, default_value = "native,native-q8,f16")]
    weights: String,
    /// A GGUF file (default: the pinned default model).
    #[arg(long)]
    model: Option<PathBuf>,
}

type B = FlexBackend;

fn greedy(m: &LoadedModel<B>, prompt: &[u32], n: usize) -> Vec<u32> {
    let g = Generator::new(&m.model, None);
    let cfg = GenerationConfig { max_new_tokens: n, ..Default::default() };
    g.generate(&mut Autoregressive, &[prompt.to_vec()], &cfg, None).expect("generate").rows[0].tokens.clone()
}

/// Logits [tokens, vocab] of one causal forward over `tokens`.
fn logits(m: &LoadedModel<B>, tokens: &[u32]) -> Vec<f32> {
    let device = Default::default();
    let mut cache = m.model.new_cache(1, tokens.len() + 1, &device);
    let out = m.model.forward(&BlockInput::causal(&[tokens.to_vec()], &[0], &device), &mut cache);
    let t: Tensor<B, 2> = out.logits.reshape([tokens.len() as i32, -1]);
    t.into_data().convert::<f32>().into_vec::<f32>().expect("f32 logits")
}

fn main() {
    let args = Args::parse();
    let path = args.model.clone().unwrap_or_else(|| fetch(&SMOLLM2_135M_INSTRUCT, &mut |_, _, _| {}).expect("fetch default model"));
    let device = Default::default();
    let reference = load_with::<B>(&path, &device, WeightFormat::F32).expect("load f32");
    let tpl = reference.tokenizer.chat_template.as_ref().expect("chat template");
    let prompt = reference.tokenizer.encode(&tpl.render(&[Message::new("user", &args.prompt)], true).unwrap()).unwrap();
    let answer = greedy(&reference, &prompt, args.new_tokens);
    let all: Vec<u32> = prompt.iter().chain(&answer).copied().collect();
    let vocab = reference.model.config().vocab_size;
    let want = logits(&reference, &all);
    println!("prompt {:?}: {} prompt tokens, f32 answer {} tokens: {:?}", args.prompt, prompt.len(), answer.len(), reference.tokenizer.decode(&answer).unwrap_or_default());
    println!();
    println!("| weights | formats | max abs dlogit | mean abs dlogit | max abs logit (f32) | top-1 = f32 | greedy leaves f32 at |");
    println!("|---|---|---|---|---|---|---|");
    // The positions whose logits choose answer tokens: the last prompt token onwards.
    let from = prompt.len() - 1;
    for w in args.weights.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let format: WeightFormat = w.parse().expect("weight format");
        let m = load_with::<B>(&path, &device, format).expect("load");
        let got = logits(&m, &all);
        let (mut max, mut sum, mut top, mut scale) = (0f32, 0f64, 0usize, 0f32);
        let positions = all.len() - from;
        for p in from..all.len() {
            let (g, r) = (&got[p * vocab..][..vocab], &want[p * vocab..][..vocab]);
            for (a, b) in g.iter().zip(r) {
                let d = (a - b).abs();
                max = max.max(d);
                sum += d as f64;
                scale = scale.max(b.abs());
            }
            top += (argmax(g) == argmax(r)) as usize;
        }
        let own = greedy(&m, &prompt, args.new_tokens);
        let leaves = own.iter().zip(&answer).position(|(a, b)| a != b).map_or("never".to_string(), |i| format!("token {i}"));
        println!(
            "| {w} | {} | {max:.2e} | {:.2e} | {scale:.1} | {top}/{positions} | {leaves} |",
            m.model.weight_formats(),
            sum / (positions * vocab) as f64
        );
    }
}
