use super::*;

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redrafter-io-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn sample() -> GgufWriter {
    let w: Vec<f32> = (0..64 * 2).map(|i| (i as f32 - 60.0) / 10.0).collect();
    GgufWriter::new()
        .meta("general.architecture", GgufValue::String("llama".into()))
        .meta("llama.block_count", GgufValue::U32(2))
        .meta("llama.rope.freq_base", GgufValue::F32(10000.0))
        .meta("tokenizer.ggml.tokens", GgufValue::Array(vec![GgufValue::String("a".into()), GgufValue::String("b".into())]))
        .tensor("w", &[2, 64], GgmlType::Q8_0, &w)
        .tensor("n", &[3], GgmlType::F32, &[1.0, 2.0, 3.0])
}

#[test]
fn writes_and_reads_back() {
    let p = tmp("ok.gguf", &sample().to_bytes());
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.meta_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.meta_u64("llama.block_count").unwrap(), 2);
    assert_eq!(f.meta_f64("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(f.meta_strings("tokenizer.ggml.tokens").unwrap(), vec!["a", "b"]);
    let n = f.tensor("n").unwrap();
    assert_eq!((n.shape, n.data), (vec![3], vec![1.0, 2.0, 3.0]));
    let w = f.tensor_shaped("w", &[2, 64]).unwrap();
    assert!((w.data[127] - 6.7).abs() < 0.03);
    assert!(matches!(f.tensor_shaped("w", &[64, 2]), Err(IoError::ShapeMismatch { .. })));
    assert!(matches!(f.tensor("nope"), Err(IoError::MissingTensor { .. })));
    assert!(matches!(f.meta_u64("llama.nope"), Err(IoError::MissingMetadata { .. })));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = sample().to_bytes();
    for cut in 0..bytes.len() {
        let p = tmp("cut.gguf", &bytes[..cut]);
        // A cut that only removes trailing alignment padding of the last tensor is still a valid file.
        match GgufFile::open(&p) {
            Err(IoError::Truncated { .. } | IoError::BadMagic { .. }) => {}
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
            Ok(f) => {
                assert!(f.tensor("n").is_ok() && f.tensor("w").is_ok(), "cut at {cut}");
            }
        }
    }
}

#[test]
fn bad_magic_version_and_counts() {
    let mut bytes = sample().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let e = GgufFile::open(tmp("magic.gguf", &bytes)).err().unwrap();
    assert!(e.to_string().contains("not a GGUF file"), "{e}");

    let mut bytes = sample().to_bytes();
    bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
    assert!(matches!(GgufFile::open(tmp("ver.gguf", &bytes)), Err(IoError::UnsupportedVersion { version: 7, .. })));

    let mut bytes = sample().to_bytes();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(GgufFile::open(tmp("count.gguf", &bytes)), Err(IoError::Truncated { .. })));
}

#[test]
fn unsupported_tensor_type_is_named() {
    let mut bytes = sample().to_bytes();
    // The type id of tensor "n" (the second info) sits 12 bytes before the end of its info record;
    // find it by searching for its name.
    let pos = bytes.windows(9).position(|w| w == b"\x01\0\0\0\0\0\0\0n").unwrap() + 9;
    let ty_at = pos + 4 + 8; // rank (u32) + one dim (u64)
    bytes[ty_at..ty_at + 4].copy_from_slice(&12u32.to_le_bytes()); // Q4_K
    let f = GgufFile::open(tmp("q4k.gguf", &bytes)).unwrap();
    let e = f.tensor("n").unwrap_err();
    assert!(matches!(e, IoError::UnsupportedTensorType { ref tensor, .. } if tensor == "n"), "{e}");
    assert!(e.to_string().contains("ggml type 12"), "{e}");
}

#[test]
fn an_offset_that_wraps_around_is_refused() {
    let bytes = sample().to_bytes();
    let data_start = GgufFile::open(tmp("wrap-ok.gguf", &bytes)).unwrap().data_start as u64;
    // Tensor "n": name, rank 1, one dim, type (u32), then its offset (u64).
    let pos = bytes.windows(9).position(|w| w == b"\x01\0\0\0\0\0\0\0n").unwrap() + 9;
    let off_at = pos + 4 + 8 + 4;
    for offset in [0u64.wrapping_sub(data_start), u64::MAX, u64::MAX - 11, 1 << 63] {
        let mut b = bytes.clone();
        b[off_at..off_at + 8].copy_from_slice(&offset.to_le_bytes());
        // Before the checked additions, data_start + offset wrapped to 0 and "n" read the header.
        match GgufFile::open(tmp("wrap.gguf", &b)) {
            Err(e @ IoError::Truncated { .. }) => assert!(e.to_string().contains("tensor `n`"), "{e}"),
            Err(e) => panic!("offset {offset}: unexpected error {e}"),
            Ok(f) => panic!("offset {offset}: opened, and `n` reads {:?}", f.tensor("n").map(|t| t.data)),
        }
    }
}
