//! ggml tensor types: block layouts, dequantization to f32 and (for writing test fixtures) quantization.
//!
//! Layouts follow ggml's `ggml-common.h`: every quantized block holds 32 values; 4-bit blocks store
//! element `i` in the low nibble of byte `i` and element `i + 16` in the high nibble.

use half::{bf16, f16};

pub const QK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    /// A type this crate cannot decode; the raw ggml id is kept for the error message.
    Other(u32),
}

impl GgmlType {
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
            Self::Other(id) => id,
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::F32 => "F32".into(),
            Self::F16 => "F16".into(),
            Self::BF16 => "BF16".into(),
            Self::Q4_0 => "Q4_0".into(),
            Self::Q4_1 => "Q4_1".into(),
            Self::Q8_0 => "Q8_0".into(),
            Self::Other(id) => format!("ggml type {id}"),
        }
    }

    /// (values per block, bytes per block); `None` for unsupported types.
    pub fn block(self) -> Option<(usize, usize)> {
        match self {
            Self::F32 => Some((1, 4)),
            Self::F16 | Self::BF16 => Some((1, 2)),
            Self::Q4_0 => Some((QK, 2 + QK / 2)),
            Self::Q4_1 => Some((QK, 4 + QK / 2)),
            Self::Q8_0 => Some((QK, 2 + QK)),
            Self::Other(_) => None,
        }
    }

    /// Byte size of `n` values, or `None` if `n` is not a whole number of blocks or the type is unknown.
    pub fn byte_size(self, n: usize) -> Option<usize> {
        let (per, bytes) = self.block()?;
        (n % per == 0).then(|| n / per * bytes)
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Decodes `raw` (exactly `ty.byte_size(out.len())` bytes) into `out`.
pub fn dequantize(ty: GgmlType, raw: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(2 + QK)) {
                let d = f16_at(b, 0);
                for (v, q) in o.iter_mut().zip(&b[2..]) {
                    *v = d * (*q as i8) as f32;
                }
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(2 + QK / 2)) {
                let d = f16_at(b, 0);
                for (j, q) in b[2..].iter().enumerate() {
                    o[j] = d * ((q & 0x0f) as i32 - 8) as f32;
                    o[j + QK / 2] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(4 + QK / 2)) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                for (j, q) in b[4..].iter().enumerate() {
                    o[j] = d * (q & 0x0f) as f32 + m;
                    o[j + QK / 2] = d * (q >> 4) as f32 + m;
                }
            }
        }
        GgmlType::Other(_) => unreachable!("callers check `block()` first"),
    }
}

/// Encodes f32 values as `ty`, with ggml's reference (non-SIMD) rounding rules.
/// `values.len()` must be a multiple of the block size.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ty.byte_size(values.len()).unwrap_or(0));
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        GgmlType::Q8_0 => {
            for block in values.chunks_exact(QK) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
            }
        }
        GgmlType::Q4_0 => {
            for block in values.chunks_exact(QK) {
                // The signed value of largest magnitude maps to -8, so the full range [-8, 7] is used.
                let max = block.iter().fold(0f32, |m, v| if v.abs() > m.abs() { *v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
                for j in 0..QK / 2 {
                    out.push(q(block[j]) | (q(block[j + QK / 2]) << 4));
                }
            }
        }
        GgmlType::Q4_1 => {
            for block in values.chunks_exact(QK) {
                let min = block.iter().copied().fold(f32::INFINITY, f32::min);
                let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
                let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                for j in 0..QK / 2 {
                    out.push(q(block[j]) | (q(block[j + QK / 2]) << 4));
                }
            }
        }
        GgmlType::Other(id) => panic!("cannot quantize to unsupported ggml type {id}"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect()
    }

    #[test]
    fn round_trips_stay_within_one_step() {
        let x = ramp(4 * QK);
        for (ty, tol) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 2e-3),
            (GgmlType::BF16, 2e-2),
            (GgmlType::Q8_0, 0.012),
            // Q4_0 spans [-8, 7] steps of amax/8: the extreme opposite to amax loses a full step.
            (GgmlType::Q4_0, 0.38),
            // Q4_1: half a step of (max - min) / 15, plus f16 rounding of the scale and minimum.
            (GgmlType::Q4_1, 0.22),
        ] {
            let raw = quantize(ty, &x);
            assert_eq!(raw.len(), ty.byte_size(x.len()).unwrap(), "{ty:?}");
            let mut y = vec![0f32; x.len()];
            dequantize(ty, &raw, &mut y);
            let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err <= tol, "{ty:?}: max error {err} > {tol}");
        }
    }

    #[test]
    fn q4_0_block_layout_matches_ggml() {
        // d = 0.5 (f16 0x3800); byte j holds element j (low nibble) and j+16 (high nibble).
        let mut raw = vec![0x00, 0x38];
        raw.extend((0..16u8).map(|j| (j % 16) | (((15 - j) % 16) << 4)));
        let mut y = vec![0f32; QK];
        dequantize(GgmlType::Q4_0, &raw, &mut y);
        assert_eq!(y[0], 0.5 * (0.0 - 8.0));
        assert_eq!(y[1], 0.5 * (1.0 - 8.0));
        assert_eq!(y[16], 0.5 * (15.0 - 8.0));
        assert_eq!(y[31], 0.5 * (0.0 - 8.0));
    }

    #[test]
    fn q4_1_and_q8_0_scale_and_offset() {
        // d = 1.0 (0x3c00), m = -2.0 (0xc000)
        let mut raw = vec![0x00, 0x3c, 0x00, 0xc0];
        raw.extend(std::iter::repeat_n(0x21u8, 16));
        let mut y = vec![0f32; QK];
        dequantize(GgmlType::Q4_1, &raw, &mut y);
        assert_eq!((y[0], y[16]), (1.0 - 2.0, 2.0 - 2.0));

        let mut raw = vec![0x00, 0x40]; // d = 2.0
        raw.extend((0..32).map(|i| (i as i8 - 16) as u8));
        dequantize(GgmlType::Q8_0, &raw, &mut y);
        assert_eq!((y[0], y[31]), (-32.0, 30.0));
    }
}
