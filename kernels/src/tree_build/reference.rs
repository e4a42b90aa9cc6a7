//! The host tree build, the reference of [`TreeBuildOps`](super::TreeBuildOps): the W beams of
//! each row merged into a prefix tree by prefix deduplication (spec §3), packed into one sequence
//! with depths, an unpack map and ancestor masks. See `docs/tree.md` for the worked example.
//!
//! Two beam positions share a tree node iff the beams agree on *every* token up to and including
//! that position (prefix equality, not token equality). Each beam contributes an own suffix of
//! nodes; packing is beam-major with beam 0 complete first, so a node whose packed index is below
//! L has packed index = depth.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::DeviceTree;
use crate::bits::mask_tensor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedTree {
    pub rows: usize,
    pub width: usize,
    pub len: usize,
    /// Packed length of the longest row; shorter rows are padded with filler slots.
    pub max_packed: usize,
    /// P_b: real packed nodes per row.
    pub packed_len: Vec<usize>,
    /// [rows, max_packed] token of each node (fillers repeat the row's first token).
    pub tokens: Vec<u32>,
    /// [rows, max_packed] depth of each node in its beam (fillers: 0).
    pub depth: Vec<usize>,
    /// [rows, max_packed] flat source `beam·L + depth` in the beam grid (fillers: 0).
    pub src: Vec<usize>,
    /// T [rows, W, L]: the first beam that shares this beam's prefix through each position.
    pub prefix: Vec<usize>,
    /// [rows, W, L]: packed index of each beam position.
    pub unpack: Vec<usize>,
}

impl PackedTree {
    /// Builds the tree of `beams` laid out [rows, W, L], padded to the longest row.
    pub fn build(beams: &[u32], rows: usize, width: usize, len: usize) -> Self {
        Self::build_padded(beams, rows, width, len, None)
    }

    /// As [`build`](Self::build), padded with fillers to `pad` slots per row when given (at
    /// least the longest row): the fixed W·L layout of the device build.
    pub fn build_padded(beams: &[u32], rows: usize, width: usize, len: usize, pad: Option<usize>) -> Self {
        assert_eq!(beams.len(), rows * width * len, "beams must be [rows, W, L]");
        assert!(width > 0 && len > 0, "a tree needs at least one beam of one token");
        let (w, l) = (width, len);
        let mut prefix = vec![0usize; rows * w * l];
        let mut unpack = vec![0usize; rows * w * l];
        let mut packed_len = vec![0usize; rows];
        let mut row_nodes: Vec<Vec<(u32, usize)>> = Vec::with_capacity(rows); // (token, src)
        for r in 0..rows {
            let beam = |i: usize| &beams[(r * w + i) * l..(r * w + i + 1) * l];
            let t = &mut prefix[r * w * l..(r + 1) * w * l];
            for i in 0..w {
                // T[i][k] = the smallest j whose longest common prefix with beam i exceeds k.
                let mut filled = 0;
                for j in 0..=i {
                    let lcp = if j == i { l } else { beam(i).iter().zip(beam(j)).take_while(|(a, b)| a == b).count() };
                    while filled < lcp {
                        t[i * l + filled] = j;
                        filled += 1;
                    }
                    if filled == l {
                        break;
                    }
                }
            }
            let own: Vec<usize> = (0..w).map(|j| (0..l).filter(|&k| t[j * l + k] == j).count()).collect();
            let first: Vec<usize> = own.iter().map(|&n| l - n).collect();
            let start: Vec<usize> = own.iter().scan(0, |acc, &n| { let s = *acc; *acc += n; Some(s) }).collect();
            let mut nodes = Vec::new();
            for j in 0..w {
                for k in first[j]..l {
                    nodes.push((beam(j)[k], j * l + k));
                }
            }
            for i in 0..w {
                for k in 0..l {
                    let tj = t[i * l + k];
                    unpack[(r * w + i) * l + k] = start[tj] + k - first[tj];
                }
            }
            packed_len[r] = nodes.len();
            row_nodes.push(nodes);
        }
        let longest = packed_len.iter().copied().max().unwrap_or(0);
        let max_packed = pad.map_or(longest, |p| {
            assert!(p >= longest, "a pad of {p} slots is shorter than the longest row ({longest})");
            p
        });
        let mut tokens = vec![0u32; rows * max_packed];
        let mut depth = vec![0usize; rows * max_packed];
        let mut src = vec![0usize; rows * max_packed];
        for (r, nodes) in row_nodes.iter().enumerate() {
            for p in 0..max_packed {
                let (tok, s) = nodes.get(p).copied().unwrap_or((nodes[0].0, 0));
                tokens[r * max_packed + p] = tok;
                if p < nodes.len() {
                    src[r * max_packed + p] = s;
                    depth[r * max_packed + p] = s % l;
                }
            }
        }
        Self { rows, width, len, max_packed, packed_len, tokens, depth, src, prefix, unpack }
    }

    /// Packed index of beam `i`'s position `k` in row `r`.
    pub fn node(&self, r: usize, i: usize, k: usize) -> usize {
        self.unpack[(r * self.width + i) * self.len + k]
    }

    /// Position ids [rows, max_packed]: committed length + depth (never the packed index).
    pub fn positions(&self, committed: &[usize]) -> Vec<i64> {
        (0..self.rows * self.max_packed).map(|x| (committed[x / self.max_packed] + self.depth[x]) as i64).collect()
    }

    /// Ancestor mask [rows, P, P]: node p sees node q iff q is on p's root path (p included).
    /// Filler slots see only themselves.
    pub fn ancestor_mask(&self) -> Vec<bool> {
        let p = self.max_packed;
        let mut mask = vec![false; self.rows * p * p];
        for r in 0..self.rows {
            for q in 0..p {
                let row = &mut mask[(r * p + q) * p..(r * p + q + 1) * p];
                if q >= self.packed_len[r] {
                    row[q] = true;
                    continue;
                }
                let s = self.src[r * p + q];
                let (j, k) = (s / self.len, s % self.len);
                for kk in 0..=k {
                    row[self.node(r, j, kk)] = true;
                }
            }
        }
        mask
    }

    /// Real packed nodes over beam-grid slots, summed over rows (1 = no sharing).
    pub fn compression(&self) -> f64 {
        self.packed_len.iter().sum::<usize>() as f64 / (self.rows * self.width * self.len) as f64
    }
}

/// The op's reference: a host round trip through [`PackedTree::build`]. Having read the beams
/// back, it pads every row only to the longest row's node count, so a host-side step never runs
/// filler slots it does not need; the kernel, which reads nothing back, pads to W·L.
pub fn tree_build<B: Backend>(beams: Tensor<B, 3, Int>, lens: Tensor<B, 1, Int>) -> DeviceTree<B> {
    let [rows, w, l] = beams.dims();
    let device = beams.device();
    let host: Vec<u32> = beams.into_data().iter::<i64>().map(|t| t as u32).collect();
    let committed: Vec<usize> = lens.into_data().iter::<i64>().map(|n| n as usize).collect();
    let tree = PackedTree::build(&host, rows, w, l);
    let n = tree.max_packed;
    let ints = |v: Vec<i64>, shape: Vec<usize>| TensorData::new(v, shape);
    DeviceTree {
        tokens: Tensor::from_data(ints(tree.tokens.iter().map(|&t| t as i64).collect(), vec![rows, n]), &device),
        positions: Tensor::from_data(ints(tree.positions(&committed), vec![rows, n]), &device),
        mask: mask_tensor(&tree.ancestor_mask(), rows, n, &device),
        unpack: Tensor::from_data(ints(tree.unpack.iter().map(|&u| u as i64).collect(), vec![rows, w, l]), &device),
        packed_len: Tensor::from_data(ints(tree.packed_len.iter().map(|&p| p as i64).collect(), vec![rows]), &device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(v: &[usize], n: usize) -> Vec<Vec<usize>> {
        v.chunks(n).map(<[usize]>::to_vec).collect()
    }

    #[test]
    fn mars_example_of_spec_3_8() {
        let beams = [101, 102, 103, 104, 101, 102, 203, 204, 101, 102, 303, 104];
        let t = PackedTree::build(&beams, 1, 3, 4);
        assert_eq!(rows_of(&t.prefix, 4), vec![vec![0, 0, 0, 0], vec![0, 0, 1, 1], vec![0, 0, 2, 2]]);
        assert_eq!(t.packed_len, vec![8]);
        assert_eq!(t.tokens, vec![101, 102, 103, 104, 203, 204, 303, 104]);
        assert_eq!(t.src, vec![0, 1, 2, 3, 6, 7, 10, 11]);
        assert_eq!(t.depth, vec![0, 1, 2, 3, 2, 3, 2, 3]);
        assert_eq!(rows_of(&t.unpack, 4), vec![vec![0, 1, 2, 3], vec![0, 1, 4, 5], vec![0, 1, 6, 7]]);
        assert_eq!(t.positions(&[20]), vec![20, 21, 22, 23, 22, 23, 22, 23]);
        let expected = [
            "10000000", "11000000", "11100000", "11110000", "11001000", "11001100", "11000010", "11000011",
        ];
        let mask = t.ancestor_mask();
        for (q, want) in expected.iter().enumerate() {
            let got: String = mask[q * 8..(q + 1) * 8].iter().map(|&b| if b { '1' } else { '0' }).collect();
            assert_eq!(&got, want, "mask row {q}");
        }
        assert!((t.compression() - 8.0 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn batched_unit_test_vectors_with_filler_padding() {
        let beams = [
            91, 92, 93, 95, 91, 92, 94, 96, 91, 92, 93, 97, // row 0: P = 7
            93, 94, 95, 92, 93, 95, 96, 93, 93, 94, 97, 96, // row 1: P = 9
        ];
        let t = PackedTree::build(&beams, 2, 3, 4);
        assert_eq!(t.packed_len, vec![7, 9]);
        assert_eq!(t.max_packed, 9);
        assert_eq!(rows_of(&t.prefix, 4), vec![
            vec![0, 0, 0, 0], vec![0, 0, 1, 1], vec![0, 0, 0, 2],
            vec![0, 0, 0, 0], vec![0, 1, 1, 1], vec![0, 0, 2, 2],
        ]);
        assert_eq!(&t.tokens[..7], &[91, 92, 93, 95, 94, 96, 97]);
        assert_eq!(&t.tokens[9..], &[93, 94, 95, 92, 95, 96, 93, 97, 96]);
        assert_eq!(&t.src[..7], &[0, 1, 2, 3, 6, 7, 11]);
        assert_eq!(&t.src[9..], &[0, 1, 2, 3, 5, 6, 7, 10, 11]);
        assert_eq!(&t.depth[..7], &[0, 1, 2, 3, 2, 3, 3]);
        assert_eq!(&t.depth[9..], &[0, 1, 2, 3, 1, 2, 3, 2, 3]);
        assert_eq!(rows_of(&t.unpack, 4), vec![
            vec![0, 1, 2, 3], vec![0, 1, 4, 5], vec![0, 1, 2, 6],
            vec![0, 1, 2, 3], vec![0, 4, 5, 6], vec![0, 1, 7, 8],
        ]);
        let mask = t.ancestor_mask();
        let row = |r: usize, q: usize| -> Vec<usize> { (0..9).filter(|&k| mask[(r * 9 + q) * 9 + k]).collect() };
        assert_eq!(row(0, 6), vec![0, 1, 2, 6], "query `97` sees its root path");
        assert_eq!(row(0, 7), vec![7], "fillers see only themselves");
        assert_eq!(row(0, 8), vec![8]);
        assert_eq!(&t.depth[7..9], &[0, 0]);
        assert_eq!(t.positions(&[5, 3])[..9], [5, 6, 7, 8, 7, 8, 8, 5, 5]);
    }

    #[test]
    fn duplicates_and_single_beam() {
        let t = PackedTree::build(&[7, 8, 9, 7, 8, 9], 1, 2, 3);
        assert_eq!(t.packed_len, vec![3]);
        assert_eq!(t.unpack, vec![0, 1, 2, 0, 1, 2]);
        let t = PackedTree::build(&[5], 1, 1, 1);
        assert_eq!((t.packed_len[0], t.ancestor_mask()), (1, vec![true]));
    }

    #[test]
    fn every_beam_is_recovered_through_unpack_and_nodes_lie_on_their_parent_path() {
        // Small alphabet so that beams share prefixes often.
        let mut x = 12345u64;
        for _ in 0..200 {
            let (rows, w, l) = (2, 1 + (x % 5) as usize, 1 + (x % 4) as usize);
            let beams: Vec<u32> = (0..rows * w * l)
                .map(|i| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    if i % l == 0 { 1 } else { (x >> 61) as u32 % 3 }
                })
                .collect();
            let t = PackedTree::build(&beams, rows, w, l);
            let mask = t.ancestor_mask();
            let p = t.max_packed;
            for r in 0..rows {
                assert!(t.packed_len[r] >= l && t.packed_len[r] <= 1 + w * (l - 1));
                for i in 0..w {
                    for k in 0..l {
                        let n = t.node(r, i, k);
                        assert_eq!(t.tokens[r * p + n], beams[(r * w + i) * l + k]);
                        assert_eq!(t.depth[r * p + n], k);
                        if n < l {
                            assert_eq!(n, k, "beam 0's block: packed index = depth");
                        }
                        let seen: Vec<usize> = (0..p).filter(|&q| mask[(r * p + n) * p + q]).collect();
                        let mut path: Vec<usize> = (0..=k).map(|kk| t.node(r, i, kk)).collect();
                        path.sort();
                        assert_eq!(seen, path);
                    }
                }
            }
        }
    }
}
