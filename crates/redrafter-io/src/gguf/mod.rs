//! GGUF (versions 2 and 3) reader and writer.
//!
//! The reader memory-maps the file and checks every length against the bytes that are really there,
//! so a truncated or corrupt file yields an [`IoError`] naming the problem instead of a panic or a
//! huge allocation.

mod quant;
mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use quant::{GgmlType, QK, dequantize, quantize};
pub use writer::GgufWriter;

use crate::error::{IoError, Result, io_err};
use crate::host::{HostTensor, TensorSource};

pub const MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v as u64),
            Self::U16(v) => Some(v as u64),
            Self::U32(v) => Some(v as u64),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v as f64),
            Self::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (innermost) dimension.
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// Row-major shape (outermost first), as PyTorch and burn write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
}

pub struct GgufFile {
    path: PathBuf,
    map: memmap2::Mmap,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: BTreeMap<String, GgufTensorInfo>,
    data_start: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(IoError::Truncated {
                path: self.path.to_path_buf(),
                what: format!("{what} needs {n} bytes at offset {}, file has {}", self.pos, self.bytes.len()),
            });
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("take returned N bytes"))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// A count that must be backed by at least `min_bytes_each` bytes per item, so corrupt counts
    /// fail fast instead of driving a giant allocation.
    fn count(&mut self, what: &str, min_bytes_each: usize) -> Result<usize> {
        let n = self.u64(what)?;
        if n.saturating_mul(min_bytes_each as u64) > self.remaining() as u64 {
            return Err(IoError::Truncated {
                path: self.path.to_path_buf(),
                what: format!("{what} claims {n} items but only {} bytes remain", self.remaining()),
            });
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| IoError::Corrupt {
            path: self.path.to_path_buf(),
            what: format!("{what} is not valid UTF-8"),
        })
    }

    fn value(&mut self, ty: u32, what: &str, depth: usize) -> Result<GgufValue> {
        Ok(match ty {
            0 => GgufValue::U8(self.array::<1>(what)?[0]),
            1 => GgufValue::I8(self.array::<1>(what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => GgufValue::Bool(self.array::<1>(what)?[0] != 0),
            8 => GgufValue::String(self.string(what)?),
            9 if depth < 4 => {
                let elem = self.u32(what)?;
                let n = self.count(what, 1)?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => {
                return Err(IoError::Corrupt {
                    path: self.path.to_path_buf(),
                    what: format!("{what} has unknown value type {other}"),
                });
            }
        })
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(io_err(&path))?;
        // SAFETY: the map is read-only and the file is not modified while we hold it; a file
        // changed underneath us by another process is outside what any reader can guard against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&path))?;
        Self::parse(path, map)
    }

    fn parse(path: PathBuf, map: memmap2::Mmap) -> Result<Self> {
        let mut c = Cursor { bytes: &map, pos: 0, path: &path };
        let magic = c.array::<4>("the magic number")?;
        if magic != MAGIC {
            return Err(IoError::BadMagic { path: path.clone(), found: magic });
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(IoError::UnsupportedVersion { path: path.clone(), version });
        }
        // Minimum sizes: a tensor info is >= 8+4+8+4+8 bytes, a key-value >= 8+4+1.
        let n_tensors = c.count("the tensor count", 32)?;
        let n_kv = c.count("the metadata count", 13)?;

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = c.u32(&format!("the type of `{key}`"))?;
            let value = c.value(ty, &format!("metadata `{key}`"), 0)?;
            metadata.insert(key, value);
        }

        let mut tensors = BTreeMap::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor name #{i}"))?;
            let n_dims = c.u32(&format!("the rank of `{name}`"))?;
            if n_dims == 0 || n_dims > 4 {
                return Err(IoError::Corrupt {
                    path: path.clone(),
                    what: format!("tensor `{name}` has rank {n_dims} (GGUF allows 1 to 4)"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&format!("the dims of `{name}`"))?);
            }
            let dtype = GgmlType::from_id(c.u32(&format!("the type of `{name}`"))?);
            let offset = c.u64(&format!("the offset of `{name}`"))?;
            tensors.insert(name.clone(), GgufTensorInfo { name, dims, dtype, offset });
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| IoError::Corrupt {
                path: path.clone(),
                what: "general.alignment is not a power of two".into(),
            })?,
        };
        // The data section starts at the next multiple of the alignment; past the end of the
        // file it holds nothing, and each tensor's extent check below then fails by name.
        let data_start = (c.pos as u64).div_ceil(alignment).saturating_mul(alignment).min(map.len() as u64);

        let file = Self { path, map, version, metadata, tensors, data_start: data_start as usize };
        for info in file.tensors.values() {
            file.check_extent(info)?;
        }
        Ok(file)
    }

    /// Unsupported types are reported only when the tensor is read, so a file with an odd
    /// tensor we never use still opens.
    fn check_extent(&self, info: &GgufTensorInfo) -> Result<()> {
        let numel = info.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let Some(numel) = numel.filter(|&n| n < (1 << 40)) else {
            return Err(IoError::Corrupt {
                path: self.path.clone(),
                what: format!("tensor `{}` has absurd dims {:?}", info.name, info.dims),
            });
        };
        let Some((per, bytes)) = info.dtype.block() else { return Ok(()) };
        if info.dims[0] % per as u64 != 0 {
            return Err(IoError::Corrupt {
                path: self.path.clone(),
                what: format!("tensor `{}` rows of {} do not split into {per}-value blocks", info.name, info.dims[0]),
            });
        }
        self.extent(info, numel / per as u64 * bytes as u64).map(|_| ())
    }

    /// The byte range `[start, end)` of a tensor of `size` bytes in the file. The offset comes
    /// from the file, so every addition is checked: a crafted offset must not wrap around to
    /// point at the header.
    fn extent(&self, info: &GgufTensorInfo, size: u64) -> Result<(usize, usize)> {
        let start = (self.data_start as u64).checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(size));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.map.len() as u64 => Ok((start as usize, end as usize)),
            _ => Err(IoError::Truncated {
                path: self.path.clone(),
                what: format!(
                    "tensor `{}` ({size} bytes at offset {} of the data section, which starts at byte {}) ends past the end of the file ({} bytes)",
                    info.name,
                    info.offset,
                    self.data_start,
                    self.map.len()
                ),
            }),
        }
    }

    pub fn meta(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn missing(&self, key: &str) -> IoError {
        IoError::MissingMetadata { path: self.path.clone(), key: key.to_string() }
    }

    pub fn meta_u64(&self, key: &str) -> Result<u64> {
        self.meta(key).and_then(GgufValue::as_u64).ok_or_else(|| self.missing(key))
    }

    pub fn meta_f64(&self, key: &str) -> Result<f64> {
        self.meta(key).and_then(GgufValue::as_f64).ok_or_else(|| self.missing(key))
    }

    pub fn meta_str(&self, key: &str) -> Result<&str> {
        self.meta(key).and_then(GgufValue::as_str).ok_or_else(|| self.missing(key))
    }

    pub fn meta_strings(&self, key: &str) -> Result<Vec<&str>> {
        let arr = self.meta(key).and_then(GgufValue::as_array).ok_or_else(|| self.missing(key))?;
        arr.iter().map(|v| v.as_str().ok_or_else(|| self.missing(key))).collect()
    }

    /// Raw bytes of a tensor, as stored.
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<&[u8]> {
        let unsupported = || IoError::UnsupportedTensorType {
            path: self.path.clone(),
            tensor: info.name.clone(),
            dtype: info.dtype.name(),
        };
        let size = info.dtype.byte_size(info.numel()).ok_or_else(unsupported)?;
        let (start, end) = self.extent(info, size as u64)?;
        Ok(&self.map[start..end])
    }
}

impl TensorSource for GgufFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn try_tensor(&self, name: &str) -> Result<Option<HostTensor>> {
        let Some(info) = self.tensors.get(name) else { return Ok(None) };
        let raw = self.tensor_bytes(info)?;
        let mut data = vec![0f32; info.numel()];
        dequantize(info.dtype, raw, &mut data);
        Ok(Some(HostTensor::new(info.shape(), data)))
    }
}

#[cfg(test)]
mod tests;
