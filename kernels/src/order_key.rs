//! `f32::total_cmp`'s order as an unsigned 32-bit key, for kernels that select and sort floats
//! exactly as the host does (ties, ±0 and NaN included).

use cubecl::prelude::*;

/// Negatives flip every bit, the rest set the sign bit; then unsigned order is `total_cmp` order.
#[cube]
pub(crate) fn order_key(x: f32) -> u32 {
    let bits = u32::reinterpret(x);
    select((bits >> 31u32) == 1u32, bits ^ 0xFFFF_FFFFu32, bits | 0x8000_0000u32)
}
