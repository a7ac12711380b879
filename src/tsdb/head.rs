//! The head: every series known to the store, its open chunk, and the
//! indexes that find series (label hash → slot, postings). Only the commit
//! thread mutates it (under the write lock, after a durable commit);
//! appenders and readers take the read lock briefly.
//!
//! Series have two numbers: the persistent **id** (u64, allocated
//! monotonically, never reused, used in redb keys) and the **slot** (u32,
//! index into the head's vectors). Slots are assigned in id order at start
//! and appended for new series, so `ids` stays sorted and slot order equals
//! id order; postings lists sorted by slot are therefore sorted by id too.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::chunk::HeadChunk;
use crate::model::{Labels, Timestamp};
use crate::tsdb::encoding::{PartitionSummary, Reader, decode_labels, encode_labels};
use crate::tsdb::postings::{Postings, SeriesSlot, Symbols};

/// Passes an already-computed 64-bit label hash through unchanged.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with this hasher; fold anything else.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type HashIndex = HashMap<u64, SeriesSlot, BuildHasherDefault<PassThroughHasher>>;

/// One series in memory.
pub struct HeadSeries {
    pub id: u64,
    /// The label set in the `series` table encoding (see `encoding::encode_labels`):
    /// one allocation, compared against borrowed pairs without pointer chasing.
    pub labels: Box<[u8]>,
    /// Samples not yet sealed into `chunks`; their log records are kept.
    pub chunk: HeadChunk,
    /// Log sequence of the record holding the open chunk's first sample.
    pub chunk_first_log_seq: u64,
    /// Time of the open chunk's first sample (meaningless when it is empty).
    /// Kept inline: reading it from the chunk costs a cache miss per sample
    /// on the commit thread.
    pub chunk_mint: Timestamp,
    /// Oldest sample time the series has (`i64::MAX` when it has none).
    pub min_t: Timestamp,
    /// Value bits of the newest sample, for duplicate detection.
    pub newest_value_bits: u64,
}

impl HeadSeries {
    /// The (name, value) pairs of the series, in name order.
    pub fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut reader = Reader::new(&self.labels);
        let count = reader.uvarint().unwrap_or(0);
        (0..count).map_while(move |_| {
            let mut text = || {
                let length = reader.uvarint().ok()?;
                std::str::from_utf8(reader.slice(length as usize).ok()?).ok()
            };
            Some((text()?, text()?))
        })
    }
}

#[derive(Default)]
pub struct Head {
    pub symbols: Symbols,
    pub postings: Postings,
    /// By slot; `None` for a deleted series.
    pub series: Vec<Option<HeadSeries>>,
    /// By slot: persistent id (kept for deleted series so it stays sorted).
    pub ids: Vec<u64>,
    /// By slot: time of the newest sample (`i64::MIN` when none). Kept apart
    /// from `series` so a querier snapshot is one memcpy.
    pub newest_t: Vec<Timestamp>,
    by_hash: HashIndex,
    /// Slots whose label hash equals that of an earlier series (rare).
    hash_collisions: HashMap<u64, Vec<SeriesSlot>>,
    /// Stored chunk totals per partition start.
    pub partitions: BTreeMap<Timestamp, PartitionSummary>,
    pub live_series: usize,
    /// Series removed since start: the `Appender::series_refs_generation`,
    /// since removal is the only way a slot stops naming its series (slots
    /// are never reused).
    pub removed_series_total: u64,
}

impl Head {
    pub fn series(&self, slot: SeriesSlot) -> Option<&HeadSeries> {
        self.series
            .get(slot as usize)
            .and_then(|series| series.as_ref())
    }

    pub fn series_mut(&mut self, slot: SeriesSlot) -> Option<&mut HeadSeries> {
        self.series
            .get_mut(slot as usize)
            .and_then(|series| series.as_mut())
    }

    #[inline]
    fn labels_equal(&self, slot: SeriesSlot, pairs: &[(&str, &str)]) -> bool {
        let Some(series) = self.series(slot) else {
            return false;
        };
        let mut reader = Reader::new(&series.labels);
        if reader.uvarint() != Ok(pairs.len() as u64) {
            return false;
        }
        for (name, value) in pairs {
            for wanted in [name, value] {
                let stored = reader
                    .uvarint()
                    .ok()
                    .and_then(|length| reader.slice(length as usize).ok());
                if stored != Some(wanted.as_bytes()) {
                    return false;
                }
            }
        }
        true
    }

    /// Finds a series by its label hash and sorted label pairs, without allocating.
    #[inline]
    pub fn lookup(&self, hash: u64, pairs: &[(&str, &str)]) -> Option<SeriesSlot> {
        let slot = *self.by_hash.get(&hash)?;
        if self.labels_equal(slot, pairs) {
            return Some(slot);
        }
        self.hash_collisions
            .get(&hash)?
            .iter()
            .copied()
            .find(|slot| self.labels_equal(*slot, pairs))
    }

    pub fn lookup_labels(&self, hash: u64, labels: &Labels) -> Option<SeriesSlot> {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|label| (label.name.as_str(), label.value.as_str()))
            .collect();
        self.lookup(hash, &pairs)
    }

    /// The slot the next added series will get.
    pub fn next_slot(&self) -> SeriesSlot {
        self.series.len() as SeriesSlot
    }

    /// Adds a series with an id greater than every id present.
    pub fn add_series(&mut self, id: u64, labels: &Labels) -> SeriesSlot {
        debug_assert!(self.ids.last().is_none_or(|last| *last < id));
        let slot = self.next_slot();
        let interned: Vec<(u32, u32)> = labels
            .iter()
            .map(|label| {
                (
                    self.symbols.intern(&label.name),
                    self.symbols.intern(&label.value),
                )
            })
            .collect();
        self.postings.add(slot, &interned);
        let encoded = encode_labels(
            labels
                .iter()
                .map(|label| (label.name.as_str(), label.value.as_str())),
        )
        .into_boxed_slice();
        let hash = labels.hash64();
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(slot);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.hash_collisions.entry(hash).or_default().push(slot);
            }
        }
        self.series.push(Some(HeadSeries {
            id,
            labels: encoded,
            chunk: HeadChunk::new(),
            chunk_first_log_seq: 0,
            chunk_mint: Timestamp::MIN,
            min_t: Timestamp::MAX,
            newest_value_bits: 0,
        }));
        self.ids.push(id);
        self.newest_t.push(Timestamp::MIN);
        self.live_series += 1;
        slot
    }

    /// Removes a series from every index; its slot stays empty.
    pub fn remove_series(&mut self, slot: SeriesSlot) {
        let Some(series) = self.series.get_mut(slot as usize).and_then(|s| s.take()) else {
            return;
        };
        let labels = decode_labels(&series.labels).unwrap_or_default();
        let interned: Vec<(u32, u32)> = labels
            .iter()
            .filter_map(|label| {
                Some((
                    self.symbols.find(&label.name)?,
                    self.symbols.find(&label.value)?,
                ))
            })
            .collect();
        self.postings.remove(slot, &interned);
        let hash = labels.hash64();
        if self.by_hash.get(&hash) == Some(&slot) {
            self.by_hash.remove(&hash);
            if let Some(others) = self.hash_collisions.get_mut(&hash)
                && let Some(first) = others.pop()
            {
                self.by_hash.insert(hash, first);
            }
        }
        if let Some(others) = self.hash_collisions.get_mut(&hash) {
            others.retain(|other| *other != slot);
            if others.is_empty() {
                self.hash_collisions.remove(&hash);
            }
        }
        if let Some(newest) = self.newest_t.get_mut(slot as usize) {
            *newest = Timestamp::MIN;
        }
        self.live_series -= 1;
        self.removed_series_total += 1;
    }

    /// Slot of a persistent id (binary search; ids are sorted by slot).
    pub fn slot_of_id(&self, id: u64) -> Option<SeriesSlot> {
        let slot = self.ids.binary_search(&id).ok()? as SeriesSlot;
        self.series(slot).map(|_| slot)
    }

    pub fn labels_of(&self, slot: SeriesSlot) -> Labels {
        match self.series(slot) {
            // Written by `add_series` from a canonical label set.
            Some(series) => decode_labels(&series.labels).unwrap_or_default(),
            None => Labels::empty(),
        }
    }

    /// Heap and inline bytes of the series structures (not counting the allocator's overhead).
    pub fn memory_bytes(&self) -> usize {
        let per_series: usize = self
            .series
            .iter()
            .flatten()
            .map(|series| series.labels.len() + series.chunk.memory_bytes())
            .sum();
        per_series
            + self.series.capacity() * std::mem::size_of::<Option<HeadSeries>>()
            + self.ids.capacity() * 8
            + self.newest_t.capacity() * 8
            + self.by_hash.capacity() * 16
            + self.symbols.memory_bytes()
            + self.postings.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hash_label_pairs;

    #[test]
    fn lookup_finds_series_by_borrowed_pairs_and_survives_removal() {
        let mut head = Head::default();
        let up = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let other = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        let slot_up = head.add_series(10, &up);
        let slot_other = head.add_series(11, &other);
        let pairs = [("__name__", "up"), ("job", "a")];
        assert_eq!(head.lookup(hash_label_pairs(&pairs), &pairs), Some(slot_up));
        assert_eq!(
            head.lookup(hash_label_pairs(&[("x", "y")]), &[("x", "y")]),
            None
        );
        assert_eq!(head.slot_of_id(11), Some(slot_other));
        assert_eq!(head.labels_of(slot_other), other);
        head.remove_series(slot_up);
        assert_eq!(head.lookup(hash_label_pairs(&pairs), &pairs), None);
        assert_eq!(head.slot_of_id(10), None);
        assert_eq!(head.live_series, 1);
        assert_eq!(head.removed_series_total, 1);
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_labels() {
        let mut head = Head::default();
        let first = Labels::from_pairs([("a", "1")]);
        let second = Labels::from_pairs([("a", "2")]);
        let first_slot = head.add_series(1, &first);
        // Force a collision by registering the second series under the first's hash.
        let second_slot = head.add_series(2, &second);
        let forced_hash = first.hash64();
        head.by_hash.remove(&second.hash64());
        head.hash_collisions
            .entry(forced_hash)
            .or_default()
            .push(second_slot);
        assert_eq!(head.lookup(forced_hash, &[("a", "1")]), Some(first_slot));
        assert_eq!(head.lookup(forced_hash, &[("a", "2")]), Some(second_slot));
    }
}
