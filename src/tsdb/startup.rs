//! Opening the store: create or open the redb file, check the format
//! version, load series into the head, load each series' sealed tail (for
//! out-of-order checks after a restart), load partition totals and
//! metadata, replay the log into open chunks, then start the commit thread.
//!
//! Replay skips every logged sample at or before its series' sealed tail:
//! those samples were sealed into `chunks` in the same transaction that
//! wrote the tail, and samples of a series are strictly increasing in time,
//! so "t <= tail" is exactly "already in a chunk".

use std::collections::{BTreeMap, VecDeque};
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::model::{MetricMetadata, Timestamp};
use crate::tsdb::commit::{CommitState, CommitThread, Settings, read_meta_u64};
use crate::tsdb::encoding;
use crate::tsdb::fault::FaultInjectingBackend;
use crate::tsdb::head::Head;
use crate::tsdb::metrics::TsdbMetrics;
use crate::tsdb::symbols::{self, SeriesSymbols};
use crate::tsdb::tables;
use crate::tsdb::{Options, RedbContext, Shared, Tsdb, TsdbError};

pub fn open(dir: &Path, options: Options) -> Result<Arc<Tsdb>, TsdbError> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(|error| TsdbError::CreateDirectory {
        path: dir.to_path_buf(),
        message: error.to_string(),
    })?;
    let path = dir.join(tables::DATABASE_FILE_NAME);
    let database = match &options.fault_injection {
        Some(faults) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|error| TsdbError::Database {
                    context: "opening the database file",
                    message: error.to_string(),
                })?;
            let backend =
                FaultInjectingBackend::new(file, faults.clone()).context("opening the database")?;
            Database::builder()
                .set_cache_size(options.cache_bytes)
                .create_with_backend(backend)
                .context("opening the database")?
        }
        None => Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(&path)
            .context("opening the database")?,
    };
    let mut database = database;
    initialize(&database)?;
    compact_file_if_fragmented(&mut database, &path)?;
    let loaded = load(&database)?;
    let series_count = loaded.head.live_series;
    let replayed = loaded.replayed_samples;

    let shared = Arc::new(Shared {
        database: RwLock::new(None),
        head: RwLock::new(loaded.head),
        metrics: TsdbMetrics::default(),
        poisoned: Mutex::new(None),
        newest_t: AtomicI64::new(loaded.newest_t),
        retention_floor: AtomicI64::new(loaded.retention_floor),
        log_bytes: AtomicU64::new(
            loaded
                .state
                .log_records
                .iter()
                .map(|(_, bytes)| bytes)
                .sum(),
        ),
        metadata: RwLock::new(loaded.metadata),
        retention: options.retention.clone(),
        database_path: path,
        sample_buffers: Default::default(),
    });
    let database = Arc::new(database);
    *shared.database.write() = Some(database.clone());
    shared.metrics.head_series.set(series_count as f64);

    let (sender, receiver) = sync_channel(options.commit_queue_depth.max(1));
    let commit_thread = CommitThread::new(
        shared.clone(),
        database,
        receiver,
        Settings {
            flush_interval: options.flush_interval,
            open_chunk_max_age: options.open_chunk_max_age,
            log_max_bytes: options.log_max_bytes,
            compaction_step_chunks: options.compaction_step_chunks.max(1),
        },
        loaded.state,
    );
    let handle = std::thread::Builder::new()
        .name("guardia-tsdb-commit".to_string())
        .spawn(move || commit_thread.run())
        .map_err(|error| TsdbError::Database {
            context: "starting the commit thread",
            message: error.to_string(),
        })?;
    tracing::info!(
        series = series_count,
        replayed_samples = replayed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "time-series store opened"
    );
    Ok(Arc::new(Tsdb {
        shared,
        sender: RwLock::new(Some(sender)),
        commit_thread: Mutex::new(Some(handle)),
    }))
}

/// Unallocated pages at least this large a share of the file (and at least
/// `MIN_FRAGMENTED_BYTES`) make the open compact the file. redb never
/// shrinks its file while running: the log's pages, freed as chunks are
/// sealed, and the chunk pages freed by partition compaction stay allocated
/// until `Database::compact`, which needs the database to itself, so start-up
/// is the place for it.
const FRAGMENTED_SHARE_PERCENT: u64 = 25;
const MIN_FRAGMENTED_BYTES: u64 = 16 << 20;
const MAX_COMPACTION_PASSES: usize = 8;

fn compact_file_if_fragmented(database: &mut Database, path: &Path) -> Result<(), TsdbError> {
    let stats = {
        let transaction = database
            .begin_write()
            .context("beginning the statistics transaction")?;
        let stats = transaction.stats().context("reading database statistics")?;
        transaction
            .abort()
            .context("ending the statistics transaction")?;
        stats
    };
    let allocated = stats.allocated_pages() * stats.page_size() as u64;
    let file_bytes = std::fs::metadata(path)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let free = file_bytes.saturating_sub(allocated);
    if free < MIN_FRAGMENTED_BYTES || free * 100 < file_bytes * FRAGMENTED_SHARE_PERCENT {
        return Ok(());
    }
    let started = Instant::now();
    // Each call moves what it can; a few passes reach the fixed point.
    for _ in 0..MAX_COMPACTION_PASSES {
        if !database.compact().context("compacting the database file")? {
            break;
        }
    }
    tracing::info!(
        free_bytes_before = free,
        file_bytes_after = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "database file compacted"
    );
    Ok(())
}

/// Rewrites every version-1 series row (label text) as a symbol row.
fn migrate_series_rows(transaction: &redb::WriteTransaction) -> Result<(), TsdbError> {
    let mut rows: Vec<(u64, Vec<u8>)> = Vec::new();
    {
        let series_table = transaction
            .open_table(tables::SERIES)
            .context("opening the series table")?;
        for entry in series_table.iter().context("reading series")? {
            let (id, labels) = entry.context("reading a series")?;
            rows.push((id.value(), labels.value().to_vec()));
        }
    }
    // Rewritten from scratch: rows shrunk in place would leave their
    // B-tree leaves mostly empty.
    transaction
        .delete_table(tables::SERIES)
        .context("replacing the series table")?;
    let mut series_table = transaction
        .open_table(tables::SERIES)
        .context("opening the series table")?;
    let mut symbols_table = transaction
        .open_table(tables::SYMBOLS)
        .context("opening the symbols table")?;
    let mut series_symbols = SeriesSymbols::from_strings(&symbols::load_symbols(&symbols_table)?);
    for (id, text_row) in rows {
        let labels = encoding::decode_labels(&text_row)
            .map_err(|error| corrupt(&format!("series {id}"), error))?;
        let row = series_symbols.encode_labels(
            &mut symbols_table,
            labels
                .iter()
                .map(|label| (label.name.as_str(), label.value.as_str())),
        )?;
        series_table
            .insert(id, row.as_slice())
            .context("writing a series")?;
    }
    Ok(())
}

/// Creates missing tables and checks (or writes) the format version.
fn initialize(database: &Database) -> Result<(), TsdbError> {
    let transaction = database
        .begin_write()
        .context("beginning the initial transaction")?;
    {
        let mut meta = transaction
            .open_table(tables::META)
            .context("opening the meta table")?;
        match read_meta_u64(&meta, tables::META_FORMAT_VERSION)? {
            Some(found) if found > tables::FORMAT_VERSION => {
                return Err(TsdbError::NewerFormat {
                    found,
                    supported: tables::FORMAT_VERSION,
                });
            }
            Some(found) if found == tables::FORMAT_VERSION => {}
            Some(found) => {
                // Version 1: series rows hold label text; re-encode them
                // with symbols. Its missing tables are created below.
                migrate_series_rows(&transaction)?;
                tracing::info!(
                    from = found,
                    to = tables::FORMAT_VERSION,
                    "storage format upgraded"
                );
                meta.insert(
                    tables::META_FORMAT_VERSION,
                    tables::FORMAT_VERSION.to_le_bytes().as_slice(),
                )
                .context("writing the format version")?;
            }
            None => {
                meta.insert(
                    tables::META_FORMAT_VERSION,
                    tables::FORMAT_VERSION.to_le_bytes().as_slice(),
                )
                .context("writing the format version")?;
            }
        }
        transaction
            .open_table(tables::SERIES)
            .context("creating the series table")?;
        transaction
            .open_table(tables::SERIES_TAIL)
            .context("creating the series_tail table")?;
        transaction
            .open_table(tables::LOG)
            .context("creating the log table")?;
        transaction
            .open_table(tables::CHUNKS)
            .context("creating the chunks table")?;
        transaction
            .open_table(tables::PARTITIONS)
            .context("creating the partitions table")?;
        transaction
            .open_table(tables::BLOCKS)
            .context("creating the blocks table")?;
        transaction
            .open_table(tables::SYMBOLS)
            .context("creating the symbols table")?;
        transaction
            .open_table(tables::METADATA)
            .context("creating the metadata table")?;
    }
    transaction
        .commit()
        .context("committing the initial transaction")
}

struct Loaded {
    head: Head,
    state: CommitState,
    newest_t: Timestamp,
    retention_floor: Timestamp,
    metadata: BTreeMap<String, MetricMetadata>,
    replayed_samples: u64,
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> TsdbError {
    TsdbError::Corrupt(format!("{what}: {error}"))
}

fn load(database: &Database) -> Result<Loaded, TsdbError> {
    let transaction = database
        .begin_read()
        .context("beginning the load transaction")?;
    let meta = transaction
        .open_table(tables::META)
        .context("opening the meta table")?;
    let next_series_id = read_meta_u64(&meta, tables::META_NEXT_SERIES_ID)?.unwrap_or(0);
    let mut next_log_seq = read_meta_u64(&meta, tables::META_NEXT_LOG_SEQ)?.unwrap_or(0);
    let retention_floor = read_meta_u64(&meta, tables::META_RETENTION_FLOOR)?
        .map(|bits| bits as i64)
        .unwrap_or(Timestamp::MIN);

    let mut head = Head::default();
    let symbol_strings = symbols::load_symbols(
        &transaction
            .open_table(tables::SYMBOLS)
            .context("opening the symbols table")?,
    )?;
    let series_table = transaction
        .open_table(tables::SERIES)
        .context("opening the series table")?;
    for entry in series_table.iter().context("reading series")? {
        let (id, labels) = entry.context("reading a series")?;
        let id = id.value();
        let labels = symbols::decode_labels(labels.value(), &symbol_strings)
            .map_err(|error| corrupt(&format!("series {id}"), error))?;
        if id >= next_series_id {
            return Err(TsdbError::Corrupt(format!(
                "series id {id} is not below the next id {next_series_id}"
            )));
        }
        head.add_series(id, &labels);
    }

    let tails = transaction
        .open_table(tables::SERIES_TAIL)
        .context("opening the series_tail table")?;
    for entry in tails.iter().context("reading series tails")? {
        let (id, tail) = entry.context("reading a series tail")?;
        let id = id.value();
        let tail = encoding::decode_series_tail(tail.value())
            .map_err(|error| corrupt(&format!("tail of series {id}"), error))?;
        let Some(slot) = head.slot_of_id(id) else {
            continue;
        };
        head.newest_t[slot as usize] = tail.last_t;
        if let Some(series) = head.series_mut(slot) {
            series.newest_value_bits = tail.last_value_bits;
            series.min_t = tail.first_t;
        }
    }

    let partitions = transaction
        .open_table(tables::PARTITIONS)
        .context("opening the partitions table")?;
    for entry in partitions.iter().context("reading partitions")? {
        let (start, summary) = entry.context("reading a partition")?;
        let summary = encoding::decode_partition_summary(summary.value())
            .map_err(|error| corrupt("partition summary", error))?;
        head.partitions.insert(start.value(), summary);
    }

    let mut metadata = BTreeMap::new();
    let metadata_table = transaction
        .open_table(tables::METADATA)
        .context("opening the metadata table")?;
    for entry in metadata_table.iter().context("reading metadata")? {
        let (metric, encoded) = entry.context("reading metadata")?;
        match postcard::from_bytes::<MetricMetadata>(encoded.value()) {
            Ok(decoded) => {
                metadata.insert(metric.value().to_string(), decoded);
            }
            Err(error) => {
                tracing::warn!(metric = metric.value(), %error, "skipping unreadable metric metadata");
            }
        }
    }

    // Replay the log into open chunks.
    let log = transaction
        .open_table(tables::LOG)
        .context("opening the log table")?;
    let mut log_records: VecDeque<(u64, u64)> = VecDeque::new();
    let mut replayed_samples = 0u64;
    for entry in log.iter().context("reading the log")? {
        let (seq, record) = entry.context("reading a log record")?;
        let seq = seq.value();
        let bytes = record.value();
        log_records.push_back((seq, bytes.len() as u64));
        next_log_seq = next_log_seq.max(seq + 1);
        let samples = encoding::decode_log_record(bytes)
            .map_err(|error| corrupt(&format!("log record {seq}"), error))?;
        let mut cached: Option<(u64, u32)> = None;
        for sample in samples {
            // Records list series mostly in ascending id order, one apart:
            // try the slot that far from the previous one before searching.
            let predicted = cached.and_then(|(id, slot)| {
                let slot =
                    slot.checked_add(u32::try_from(sample.series_id.checked_sub(id)?).ok()?)?;
                (head.ids.get(slot as usize) == Some(&sample.series_id)
                    && head.series(slot).is_some())
                .then_some(slot)
            });
            let slot = match predicted {
                Some(slot) => {
                    cached = Some((sample.series_id, slot));
                    slot
                }
                None => match head.slot_of_id(sample.series_id) {
                    Some(slot) => {
                        cached = Some((sample.series_id, slot));
                        slot
                    }
                    // Retention removed the series: all its samples are
                    // below the floor, and it removes series rows only then.
                    None if sample.series_id < next_series_id => continue,
                    None => {
                        return Err(TsdbError::Corrupt(format!(
                            "log record {seq} names series {} beyond the next id {next_series_id}",
                            sample.series_id
                        )));
                    }
                },
            };
            let newest = &mut head.newest_t[slot as usize];
            if sample.t <= *newest {
                continue;
            }
            *newest = sample.t;
            if let Some(series) = head.series_mut(slot) {
                if series.chunk.is_empty() {
                    series.chunk_first_log_seq = seq;
                    series.chunk_mint = sample.t;
                }
                series
                    .chunk
                    .append(sample.t, f64::from_bits(sample.value_bits));
                series.newest_value_bits = sample.value_bits;
                series.min_t = series.min_t.min(sample.t);
            }
            replayed_samples += 1;
        }
    }

    let mut open_chunks_by_first_seq: BTreeMap<u64, u32> = BTreeMap::new();
    for series in head.series.iter().flatten() {
        if !series.chunk.is_empty() {
            *open_chunks_by_first_seq
                .entry(series.chunk_first_log_seq)
                .or_insert(0) += 1;
        }
    }
    let newest_t = head
        .newest_t
        .iter()
        .copied()
        .max()
        .unwrap_or(Timestamp::MIN);
    Ok(Loaded {
        head,
        state: CommitState {
            next_series_id,
            next_log_seq,
            log_records,
            open_chunks_by_first_seq,
            series_symbols: SeriesSymbols::from_strings(&symbol_strings),
        },
        newest_t,
        retention_floor,
        metadata,
        replayed_samples,
    })
}
