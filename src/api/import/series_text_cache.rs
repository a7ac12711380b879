//! The push endpoint's series cache: series text as written on a sample
//! line (`name{labels}`, see `ingest::text::SampleBuf::series_text`) →
//! the store's series reference, so a known series costs one hash and one
//! table probe instead of label parsing, sorting, hashing, limit checks and
//! the head lookup. Prometheus keeps the same kind of cache per scrape
//! target; pushers, like exporters, write a series the same way every time.
//!
//! One table serves every request. A request's **scope** (its text format
//! and `extra_label` set, which change what a text means) is part of the
//! key. The ingest limits are fixed for the life of the `ApiState` that owns
//! the cache, so a text that passed them once passes them again.
//!
//! Entries are only ever added for series the store already had (never for
//! a series the same request creates: its reference is known only after the
//! commit, and the next push will add it). The whole table is dropped when
//! the store's `series_refs_generation` moves (retention removed series) and
//! when it outgrows its caps; both are rare, and it refills in one push.
//!
//! Layout: texts live back to back in one byte arena; the table maps a
//! 64-bit hash of (scope, text) to the text's place and the reference. A
//! second text with the hash of a cached one is simply not cached (it takes
//! the full parse every time), which keeps the table one entry per hash
//! and every hit verified byte for byte.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::ops::Range;

use parking_lot::{RwLock, RwLockReadGuard};

use crate::ingest::text::Format;
use crate::storage::SeriesRef;

/// Most texts kept; past it the table starts over (about 100 bytes each).
const MAX_CACHED_SERIES: usize = 4 << 20;
/// Most arena bytes kept; the arena addresses texts with `u32` offsets.
const MAX_ARENA_BYTES: usize = 1 << 30;
/// Scopes (format × `extra_label` set) kept; past it the table starts over.
const MAX_SCOPES: usize = 4096;

/// The table's keys are hashes already; hashing them again is wasted work.
#[derive(Default)]
struct HashIsKey(u64);

impl Hasher for HashIsKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this hasher; fold anything else all the same.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[derive(Clone, Copy)]
struct CachedSeries {
    text_start: u32,
    text_length: u32,
    scope: u32,
    series_ref: SeriesRef,
}

type TableByHash = HashMap<u64, CachedSeries, BuildHasherDefault<HashIsKey>>;

#[derive(Default)]
struct Table {
    /// `Appender::series_refs_generation` the entries were taken under.
    generation: u64,
    by_hash: TableByHash,
    arena: Vec<u8>,
    /// Scope key (see `scope_key`) → scope number.
    scopes: HashMap<Vec<u8>, u32>,
}

impl Table {
    fn clear(&mut self, generation: u64) {
        self.generation = generation;
        self.by_hash = TableByHash::default();
        self.arena = Vec::new();
        self.scopes.clear();
    }

    fn text_of(&self, cached: &CachedSeries) -> &[u8] {
        let start = cached.text_start as usize;
        self.arena
            .get(start..start + cached.text_length as usize)
            .unwrap_or(&[])
    }
}

/// See the module documentation. Cheap to share: `ApiState` holds one.
#[derive(Default)]
pub struct SeriesTextCache {
    table: RwLock<Table>,
}

/// What one request learned for the cache: texts (as ranges of the
/// request's body) of series the store already had, with their reference.
#[derive(Default)]
pub struct LearnedSeries {
    entries: Vec<(u64, Range<usize>, SeriesRef)>,
}

impl LearnedSeries {
    pub fn remember(&mut self, hash: u64, text: Range<usize>, series_ref: SeriesRef) {
        self.entries.push((hash, text, series_ref));
    }
}

/// `format` and the `extra_label` pairs in one byte string (names and
/// values cannot hold `0xff`, which is not UTF-8).
fn scope_key(format: Format, extra_pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut key = vec![format as u8];
    for (name, value) in extra_pairs {
        key.push(0xff);
        key.extend_from_slice(name.as_bytes());
        key.push(0xff);
        key.extend_from_slice(value.as_bytes());
    }
    key
}

fn hash_text(scope_key: &[u8], text: &[u8]) -> u64 {
    static STATE: foldhash::fast::FixedState =
        foldhash::fast::FixedState::with_seed(0x7365_7269_6573_7478);
    let mut hasher = STATE.build_hasher();
    hasher.write(scope_key);
    hasher.write(text);
    hasher.finish()
}

/// The cache as one request reads it: a read lock held while the body is
/// parsed, so lookups take no lock of their own. Concurrent requests read
/// at once; only `SeriesTextCache::learn` writes.
pub struct ScopedSeriesTextCache<'cache> {
    table: RwLockReadGuard<'cache, Table>,
    scope_key: Vec<u8>,
    /// `None` while the scope has no entries yet.
    scope: Option<u32>,
}

impl ScopedSeriesTextCache<'_> {
    /// The hash under which `text` is (or would be) cached in this scope.
    #[inline]
    pub fn hash(&self, text: &str) -> u64 {
        hash_text(&self.scope_key, text.as_bytes())
    }

    /// The reference cached for `text` (whose hash is `hash`), if any.
    #[inline]
    pub fn get(&self, hash: u64, text: &str) -> Option<SeriesRef> {
        let scope = self.scope?;
        let cached = self.table.by_hash.get(&hash)?;
        (cached.scope == scope && self.table.text_of(cached) == text.as_bytes())
            .then_some(cached.series_ref)
    }
}

impl SeriesTextCache {
    /// Opens the cache for one request of `format` with `extra_pairs`,
    /// after dropping every entry if the store's reference generation moved.
    pub fn scoped(
        &self,
        format: Format,
        extra_pairs: &[(&str, &str)],
        generation: u64,
    ) -> ScopedSeriesTextCache<'_> {
        if self.table.read().generation != generation {
            let mut table = self.table.write();
            if table.generation != generation {
                table.clear(generation);
            }
        }
        let scope_key = scope_key(format, extra_pairs);
        let table = self.table.read();
        let scope = table.scopes.get(&scope_key).copied();
        ScopedSeriesTextCache {
            table,
            scope_key,
            scope,
        }
    }

    /// Adds what a request learned; `body` is the text its ranges index.
    /// Ignored when the generation moved since the request began.
    pub fn learn(
        &self,
        scoped: ScopedSeriesTextCache<'_>,
        generation: u64,
        body: &[u8],
        learned: LearnedSeries,
    ) {
        let ScopedSeriesTextCache {
            table, scope_key, ..
        } = scoped;
        drop(table);
        if learned.entries.is_empty() {
            return;
        }
        let mut table = self.table.write();
        if table.generation != generation {
            return;
        }
        let added_bytes: usize = learned.entries.iter().map(|(_, text, _)| text.len()).sum();
        if table.by_hash.len() + learned.entries.len() > MAX_CACHED_SERIES
            || table.arena.len() + added_bytes > MAX_ARENA_BYTES
            || (table.scopes.len() >= MAX_SCOPES && !table.scopes.contains_key(&scope_key))
        {
            table.clear(generation);
        }
        let next_scope = table.scopes.len() as u32;
        let scope = *table.scopes.entry(scope_key).or_insert(next_scope);
        for (hash, text_range, series_ref) in learned.entries {
            let Some(text) = body.get(text_range) else {
                continue;
            };
            if table.by_hash.contains_key(&hash) {
                // Cached already (by a concurrent request) or a hash collision.
                continue;
            }
            let cached = CachedSeries {
                text_start: table.arena.len() as u32,
                text_length: text.len() as u32,
                scope,
                series_ref,
            };
            table.arena.extend_from_slice(text);
            table.by_hash.insert(hash, cached);
        }
    }

    /// Entries cached (for tests and telemetry).
    pub fn len(&self) -> usize {
        self.table.read().by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held (table and arena, not the allocator's overhead).
    pub fn memory_bytes(&self) -> usize {
        let table = self.table.read();
        table.by_hash.capacity() * (8 + std::mem::size_of::<CachedSeries>() + 1)
            + table.arena.capacity()
    }
}
