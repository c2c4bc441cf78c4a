use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strum::{Display, IntoStaticStr};

use crate::GatewayError;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// Ids are non-negative `i64`s (PostgreSQL `bigint`, Milvus `Int64`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl $name {
            /// Validates and wraps an id; negative values are rejected.
            pub fn new(value: i64) -> Result<Self, GatewayError> {
                if value < 0 {
                    return Err(GatewayError::invalid(format!(
                        concat!($what, " must be >= 0, got {}"),
                        value
                    )));
                }
                Ok(Self(value))
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = GatewayError;
            fn try_from(value: i64) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for i64 {
            fn from(value: $name) -> i64 {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// Primary key of a chunk (one embedding), unique across tenants.
    ChunkId,
    "chunk_id"
);
id_newtype!(
    /// The tenant that owns a chunk; every read and write is scoped by it.
    TenantId,
    "tenant_id"
);
id_newtype!(
    /// A project within a tenant.
    ProjectId,
    "project_id"
);

/// The configured embedding dimension of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Dimension(u32);

impl Dimension {
    /// The largest dimension pgvector's `vector` type stores.
    pub const MAX: u32 = 16_000;

    pub fn new(value: u32) -> Result<Self, GatewayError> {
        if value == 0 || value > Self::MAX {
            return Err(GatewayError::invalid(format!(
                "embedding dimension must be in 1..={}, got {value}",
                Self::MAX
            )));
        }
        Ok(Self(value))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// Checks an embedding's length against this dimension.
    pub fn check(self, embedding: &Embedding) -> Result<(), GatewayError> {
        if embedding.len() != self.as_usize() {
            return Err(GatewayError::DimensionMismatch {
                expected: self.as_usize(),
                got: embedding.len(),
            });
        }
        Ok(())
    }
}

impl TryFrom<u32> for Dimension {
    type Error = GatewayError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Dimension> for u32 {
    fn from(value: Dimension) -> u32 {
        value.0
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A dense embedding: non-empty, every component finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f32>", into = "Vec<f32>")]
pub struct Embedding(Vec<f32>);

impl Embedding {
    pub fn new(values: Vec<f32>) -> Result<Self, GatewayError> {
        if values.is_empty() {
            return Err(GatewayError::invalid("embedding is empty"));
        }
        if let Some((index, value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let kind = if value.is_nan() { "NaN" } else { "infinite" };
            return Err(GatewayError::invalid(format!(
                "embedding component {index} is {kind} ({value})"
            )));
        }
        Ok(Self(values))
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an embedding is never empty. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.0
    }

    /// Euclidean norm.
    pub fn norm(&self) -> f32 {
        self.0.iter().map(|v| v * v).sum::<f32>().sqrt()
    }
}

impl TryFrom<Vec<f32>> for Embedding {
    type Error = GatewayError;
    fn try_from(value: Vec<f32>) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Embedding> for Vec<f32> {
    fn from(value: Embedding) -> Vec<f32> {
        value.0
    }
}

/// Similarity metric of a store. See the crate docs for the score convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[derive(Display, IntoStaticStr)]
#[strum(serialize_all = "UPPERCASE")]
pub enum Metric {
    /// Inner product (the default; equals cosine on unit-normalised embeddings).
    #[default]
    Ip,
    Cosine,
    L2,
}

impl Metric {
    pub const ACCEPTED: &'static str = "IP, COSINE or L2";

    /// The name Milvus and our settings use: `IP`, `COSINE`, `L2`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The port's score of `b` for query `a` (higher is more similar), computed exactly in
    /// f64. This is the reference adapters and tests compare against.
    pub fn score(self, a: &[f32], b: &[f32]) -> f32 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        match self {
            Metric::Ip => dot as f32,
            Metric::Cosine => {
                let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                if na == 0.0 || nb == 0.0 {
                    0.0
                } else {
                    (dot / (na * nb)) as f32
                }
            }
            Metric::L2 => {
                let sq: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                    .sum();
                -(sq.sqrt() as f32)
            }
        }
    }
}

/// Case-insensitive, surrounding blanks ignored; `INNER_PRODUCT` and `EUCLIDEAN` are aliases.
impl FromStr for Metric {
    type Err = GatewayError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "IP" | "INNER_PRODUCT" => Ok(Metric::Ip),
            "COSINE" => Ok(Metric::Cosine),
            "L2" | "EUCLIDEAN" => Ok(Metric::L2),
            _ => Err(GatewayError::invalid(format!(
                "unknown metric {s:?}; expected {}",
                Metric::ACCEPTED
            ))),
        }
    }
}

/// Number of hits a search returns: 1..=16384 (Milvus's limit, applied to every store so
/// that switching stores never changes which requests are valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct TopK(u32);

impl TopK {
    pub const MAX: u32 = 16_384;

    pub fn new(value: u32) -> Result<Self, GatewayError> {
        if value == 0 || value > Self::MAX {
            return Err(GatewayError::invalid(format!(
                "top_k must be in 1..={}, got {value}",
                Self::MAX
            )));
        }
        Ok(Self(value))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for TopK {
    type Error = GatewayError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TopK> for u32 {
    fn from(value: TopK) -> u32 {
        value.0
    }
}
