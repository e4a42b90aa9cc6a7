//! Hugging Face style weights: one `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use crate::error::{IoError, Result, io_err};
use crate::host::{HostTensor, TensorSource};

pub struct SafetensorsFiles {
    root: PathBuf,
    shards: Vec<(PathBuf, memmap2::Mmap)>,
    /// tensor name -> index into `shards`
    index: BTreeMap<String, usize>,
}

fn map(path: &Path) -> Result<memmap2::Mmap> {
    let f = File::open(path).map_err(io_err(path))?;
    // SAFETY: read-only map of a file we do not modify.
    unsafe { memmap2::Mmap::map(&f) }.map_err(io_err(path))
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| IoError::Safetensors {
        path: path.to_path_buf(),
        what: format!("not a valid safetensors file: {e}"),
    })
}

impl SafetensorsFiles {
    /// Opens `dir/model.safetensors`, or the shards named by `dir/model.safetensors.index.json`,
    /// or a single `.safetensors` file given directly.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let files: Vec<PathBuf> = if path.is_file() {
            vec![path.to_path_buf()]
        } else if path.join("model.safetensors").is_file() {
            vec![path.join("model.safetensors")]
        } else if path.join("model.safetensors.index.json").is_file() {
            let index_path = path.join("model.safetensors.index.json");
            let text = std::fs::read_to_string(&index_path).map_err(io_err(&index_path))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| IoError::Json { path: index_path.clone(), source })?;
            let weight_map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| IoError::Safetensors {
                path: index_path.clone(),
                what: "no `weight_map` object".into(),
            })?;
            let mut names: Vec<&str> = weight_map.values().filter_map(|v| v.as_str()).collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| path.join(n)).collect()
        } else {
            return Err(IoError::Safetensors {
                path: path.to_path_buf(),
                what: "found neither model.safetensors nor model.safetensors.index.json".into(),
            });
        };

        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for file in files {
            let m = map(&file)?;
            for name in parse(&file, &m)?.names() {
                index.insert(name.to_string(), shards.len());
            }
            shards.push((file, m));
        }
        Ok(Self { root: path.to_path_buf(), shards, index })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// An integer tensor (I64, I32, U32 or I16) as i64 values with its shape, e.g. an id map;
    /// `Ok(None)` when it does not exist.
    pub fn try_ints(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        let Some(&i) = self.index.get(name) else { return Ok(None) };
        let (file, bytes) = &self.shards[i];
        let st = parse(file, bytes)?;
        let view = st.tensor(name).map_err(|e| IoError::Safetensors { path: file.clone(), what: e.to_string() })?;
        let raw = view.data();
        let data: Vec<i64> = match view.dtype() {
            Dtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            Dtype::I32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect(),
            Dtype::U32 => raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect(),
            Dtype::I16 => raw.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect(),
            other => {
                return Err(IoError::Safetensors {
                    path: file.clone(),
                    what: format!("tensor `{name}` has type {other:?}; an integer tensor (I64, I32, U32 or I16) was expected"),
                });
            }
        };
        Ok(Some((view.shape().to_vec(), data)))
    }
}

impl TensorSource for SafetensorsFiles {
    fn path(&self) -> &Path {
        &self.root
    }

    fn try_tensor(&self, name: &str) -> Result<Option<HostTensor>> {
        let Some(&i) = self.index.get(name) else { return Ok(None) };
        let (file, bytes) = &self.shards[i];
        let st = parse(file, bytes)?;
        let view = st.tensor(name).map_err(|e| IoError::Safetensors { path: file.clone(), what: e.to_string() })?;
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => {
                return Err(IoError::UnsupportedTensorType {
                    path: file.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(Some(HostTensor::new(view.shape().to_vec(), data)))
    }
}

/// Writes f32 tensors as one safetensors file (F32 or F16), e.g. for test fixtures and drafter checkpoints.
pub fn write_safetensors(path: &Path, tensors: &[(&str, &HostTensor)], as_f16: bool) -> Result<()> {
    write_safetensors_with_ints(path, tensors, &[], as_f16)
}

/// [`write_safetensors`] plus 1-D I64 tensors (`ints`), e.g. a drafter's draft-vocabulary ids.
pub fn write_safetensors_with_ints(path: &Path, tensors: &[(&str, &HostTensor)], ints: &[(&str, &[i64])], as_f16: bool) -> Result<()> {
    let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = if as_f16 {
                t.data.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()
            } else {
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            (name.to_string(), if as_f16 { Dtype::F16 } else { Dtype::F32 }, t.shape.clone(), raw)
        })
        .collect();
    for (name, v) in ints {
        bufs.push((name.to_string(), Dtype::I64, vec![v.len()], v.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bufs
        .iter()
        .map(|(n, dtype, s, raw)| {
            let v = safetensors::tensor::TensorView::new(*dtype, s.clone(), raw).expect("sizes match by construction");
            (n.clone(), v)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path)
        .map_err(|e| IoError::Safetensors { path: path.to_path_buf(), what: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("redrafter-io-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = HostTensor::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        let p = dir.join("model.safetensors");
        write_safetensors(&p, &[("a.weight", &t)], false).unwrap();
        let st = SafetensorsFiles::open(&dir).unwrap();
        assert_eq!(st.tensor("a.weight").unwrap(), t);
        assert!(matches!(st.tensor("b"), Err(IoError::MissingTensor { .. })));

        write_safetensors(&p, &[("a.weight", &t)], true).unwrap();
        assert_eq!(SafetensorsFiles::open(&dir).unwrap().tensor("a.weight").unwrap(), t);

        write_safetensors_with_ints(&p, &[("a.weight", &t)], &[("ids", &[3, 1 << 40, -2])], false).unwrap();
        let st = SafetensorsFiles::open(&dir).unwrap();
        assert_eq!(st.try_ints("ids").unwrap(), Some((vec![3], vec![3, 1 << 40, -2])));
        assert_eq!(st.try_ints("nope").unwrap(), None);
        assert!(st.try_ints("a.weight").unwrap_err().to_string().contains("integer tensor"));
        assert!(st.tensor("ids").is_err(), "an id map is not a float tensor");

        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let e = SafetensorsFiles::open(&dir).err().unwrap();
        assert!(e.to_string().contains("not a valid safetensors file"), "{e}");
        std::fs::write(&p, b"garbage").unwrap();
        assert!(SafetensorsFiles::open(&dir).is_err());
    }
}
