//! Chunk encodings: how a run of (timestamp, value) samples of one series
//! becomes bytes and back. Pure functions over byte slices; the caller
//! (`tsdb`) decides where chunks are cut. Every encoded chunk starts with one
//! encoding byte so readers can dispatch, and every encoding round-trips
//! bit-exactly (NaN payloads included).
//!
//! PLACEHOLDER: the skeleton keeps samples raw (16 bytes each) so other
//! modules can build against this API; the real encodings replace it.

use crate::model::{Sample, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk is empty")]
    Empty,
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u8),
    #[error("chunk is truncated or corrupt: {0}")]
    Corrupt(&'static str),
}

/// Open chunk of the head: append-only, readable at any time.
#[derive(Clone, Debug, Default)]
pub struct HeadChunk {
    samples: Vec<Sample>,
}

impl HeadChunk {
    pub fn new() -> HeadChunk {
        HeadChunk::default()
    }

    /// Appends a sample; the caller guarantees `t` is greater than the last one.
    pub fn append(&mut self, t: Timestamp, v: f64) {
        self.samples.push(Sample { t, v });
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn mint(&self) -> Option<Timestamp> {
        self.samples.first().map(|s| s.t)
    }

    pub fn maxt(&self) -> Option<Timestamp> {
        self.samples.last().map(|s| s.t)
    }

    pub fn last(&self) -> Option<Sample> {
        self.samples.last().copied()
    }

    /// Heap bytes held, for memory accounting.
    pub fn memory_bytes(&self) -> usize {
        self.samples.capacity() * std::mem::size_of::<Sample>()
    }

    /// Decodes all samples (in time order).
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.clone()
    }

    /// Encodes the chunk for storage with the best encoding for its data.
    pub fn seal(&self) -> Vec<u8> {
        encode(&self.samples)
    }
}

/// Encodes samples (time-ordered, non-empty) with the best encoding.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + samples.len() * 16);
    out.push(0);
    for sample in samples {
        out.extend_from_slice(&sample.t.to_le_bytes());
        out.extend_from_slice(&sample.v.to_bits().to_le_bytes());
    }
    out
}

/// Decodes an encoded chunk. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let (&encoding, payload) = bytes.split_first().ok_or(ChunkError::Empty)?;
    if encoding != 0 {
        return Err(ChunkError::UnknownEncoding(encoding));
    }
    if payload.len() % 16 != 0 {
        return Err(ChunkError::Corrupt(
            "raw payload is not a multiple of 16 bytes",
        ));
    }
    Ok(payload
        .chunks_exact(16)
        .map(|raw| Sample {
            t: i64::from_le_bytes(raw[0..8].try_into().unwrap_or_default()),
            v: f64::from_bits(u64::from_le_bytes(
                raw[8..16].try_into().unwrap_or_default(),
            )),
        })
        .collect())
}
