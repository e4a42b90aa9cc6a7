use std::path::Path;

use crate::error::{IoError, Result};

/// A dense f32 tensor in host memory, row-major, with PyTorch's shape convention
/// (a linear layer's weight is `[out_features, in_features]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Fails with a message naming the tensor when the shape is not the expected one.
    pub fn expect_shape(self, path: &Path, name: &str, expected: &[usize]) -> Result<Self> {
        if self.shape == expected {
            Ok(self)
        } else {
            Err(IoError::ShapeMismatch {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found: self.shape,
            })
        }
    }
}

/// Anything that can hand out named f32 tensors: a GGUF file, a safetensors directory.
pub trait TensorSource {
    /// The file or directory the tensors come from, for error messages.
    fn path(&self) -> &Path;
    /// `Ok(None)` when the tensor does not exist, an error when it exists but cannot be read.
    fn try_tensor(&self, name: &str) -> Result<Option<HostTensor>>;

    fn tensor(&self, name: &str) -> Result<HostTensor> {
        self.try_tensor(name)?.ok_or_else(|| IoError::MissingTensor {
            path: self.path().to_path_buf(),
            tensor: name.to_string(),
        })
    }

    fn tensor_shaped(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        self.tensor(name)?.expect_shape(self.path(), name, shape)
    }
}
