//! `POST /api/v1/import/prometheus` (VictoriaMetrics-compatible): a body in
//! the Prometheus text format (or OpenMetrics, by `Content-Type`),
//! optionally gzip (`Content-Encoding: gzip`, or recognised by its magic
//! bytes). Query parameters: `extra_label=name=value` (repeatable; replaces
//! a label of the same name) and `timestamp=<ms>` for lines without a
//! timestamp, which otherwise get the receive time.
//!
//! All or nothing: the whole body is parsed and queued on one appender; a
//! parse error or a broken limit drops the appender (nothing stored) and
//! answers 400 naming the line. 204 only once the commit is durable; 200
//! with counts when the store rejected some samples (out of order,
//! duplicate timestamp) and stored the rest.

mod series_text_cache;

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::ingest::{
    BodyEncoding, PROTOCOL_TEXT, check_label_limits, commit_response, count_rejection,
    gunzip_limited, read_body_limited, text_body_encoding, too_many_series_message,
};
use crate::api::{ApiState, run_blocking};
use crate::config::IngestLimits;
use crate::ingest::text::{Entry, Format, Metadata, MetadataKind, SampleBuf, TextParser};
use crate::model::{MetricMetadata, Timestamp, hash_label_pairs};
use crate::storage::{Appender, CommitOutcome};

pub use series_text_cache::{LearnedSeries, ScopedSeriesTextCache, SeriesTextCache};

pub async fn import_prometheus(
    State(state): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    match import(&state, &query, &headers, body).await {
        Ok(outcome) => Ok(commit_response(&state, PROTOCOL_TEXT, &outcome)),
        Err(error) => Err(count_rejection(&state, PROTOCOL_TEXT, error)),
    }
}

/// `extra_label` values split into `(name, value)`.
fn parse_extra_labels(query: &[(String, String)]) -> Result<Vec<(String, String)>, ApiError> {
    query
        .iter()
        .filter(|(key, _)| key == "extra_label")
        .map(|(_, pair)| match pair.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => Err(ApiError::BadData(format!(
                "invalid extra_label {pair:?}: expected extra_label=name=value"
            ))),
        })
        .collect()
}

fn parse_default_timestamp(query: &[(String, String)]) -> Result<Option<Timestamp>, ApiError> {
    match query.iter().rev().find(|(key, _)| key == "timestamp") {
        None => Ok(None),
        Some((_, text)) => text.parse::<Timestamp>().map(Some).map_err(|_| {
            ApiError::BadData(format!(
                "invalid timestamp {text:?}: expected integer milliseconds since the epoch"
            ))
        }),
    }
}

async fn import(
    state: &ApiState,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
) -> Result<CommitOutcome, ApiError> {
    let extra_labels = parse_extra_labels(query)?;
    let default_timestamp = match parse_default_timestamp(query)? {
        Some(timestamp) => timestamp,
        None => state.clock().now_ms(),
    };
    let format = Format::from_content_type(
        headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(""),
    );
    let limits = state.limits().clone();
    let raw = read_body_limited(headers, body, limits.max_body_bytes).await?;
    let encoding = text_body_encoding(headers, &raw)?;
    let state = state.clone();
    run_blocking(move || {
        // A plain body is parsed where it lies (a copy would be a memmove
        // of the whole body per request).
        let text: std::borrow::Cow<'_, [u8]> = match encoding {
            BodyEncoding::Gzip => gunzip_limited(&raw, limits.max_body_bytes)?.into(),
            BodyEncoding::Identity => raw.as_ref().into(),
        };
        let extra_pairs: Vec<(&str, &str)> = extra_labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let store = state.store().clone();
        let mut appender = store.appender();
        append_text(
            &text,
            format,
            &extra_pairs,
            default_timestamp,
            &limits,
            Some(state.import_series_cache()),
            appender.as_mut(),
        )?;
        Ok(appender.commit()?)
    })
    .await
}

/// Parses a whole text body onto `appender`: the hot path of a push, kept
/// apart from the HTTP plumbing so the `ingest` bench measures exactly it.
/// On error the caller drops the appender, so nothing of the body is stored.
///
/// With a `series_cache` (one per set of `limits`: the cache assumes a text
/// that passed them once passes them again), lines whose series text the
/// cache knows skip label parsing and the store lookup; series the store
/// already had are added to the cache once the body parsed.
pub fn append_text(
    text: &[u8],
    format: Format,
    extra_pairs: &[(&str, &str)],
    default_timestamp: Timestamp,
    limits: &IngestLimits,
    series_cache: Option<&SeriesTextCache>,
    appender: &mut dyn Appender,
) -> Result<(), ApiError> {
    let mut parser = TextParser::from_bytes(text, format)
        .map_err(|error| ApiError::BadData(error.to_string()))?;
    let mut sample = SampleBuf::new();
    // A body with no more lines than the series limit cannot exceed it, so
    // the per-series set (a second hash and a set insert per sample, a large
    // share of the hot path) is only kept for bodies that could. Such
    // bodies also go without the series cache, whose lines skip that set.
    let could_exceed_series_limit =
        memchr::memchr_iter(b'\n', text).count() >= limits.max_series_per_request;
    let series_cache = series_cache.filter(|_| !could_exceed_series_limit);
    let generation = appender.series_refs_generation();
    let scoped_cache = series_cache.map(|cache| cache.scoped(format, extra_pairs, generation));
    let mut learned = LearnedSeries::default();
    let mut series_seen: HashSet<u64> = HashSet::new();
    // Metadata lines in body order, borrowed; the lines of one family
    // usually follow each other, so the last entry is the one to update.
    let mut metadata: Vec<Metadata<'_>> = Vec::new();
    // Set by the parser's known-series callback for the line just parsed.
    let mut cached_ref = None;
    loop {
        let entry = match &scoped_cache {
            Some(scoped_cache) => {
                parser.next_entry_with_known_series(&mut sample, &mut |series_text| {
                    cached_ref = scoped_cache.get(scoped_cache.hash(series_text), series_text);
                    cached_ref.is_some()
                })
            }
            None => parser.next_entry(&mut sample),
        }
        .map_err(|error| ApiError::BadData(error.to_string()))?;
        let Some(entry) = entry else { break };
        match entry {
            Entry::Sample => {
                let line_number = sample.line_number();
                let timestamp = sample.timestamp_ms().unwrap_or(default_timestamp);
                let value = sample.value();
                if sample.labels_skipped()
                    && let Some(series_ref) = cached_ref
                {
                    appender.append_ref(series_ref, timestamp, value)?;
                    continue;
                }
                let series_ref = sample.with_sorted_label_pairs(extra_pairs, |pairs| {
                    check_label_limits(pairs, limits).map_err(|reason| {
                        ApiError::BadData(format!("line {line_number}: {reason}"))
                    })?;
                    if could_exceed_series_limit
                        && series_seen.insert(hash_label_pairs(pairs))
                        && series_seen.len() > limits.max_series_per_request
                    {
                        return Err(ApiError::BadData(format!(
                            "line {line_number}: {}",
                            too_many_series_message(limits.max_series_per_request)
                        )));
                    }
                    appender
                        .append_and_get_ref(pairs, timestamp, value)
                        .map_err(|error| match ApiError::from(error) {
                            ApiError::BadData(reason) => {
                                ApiError::BadData(format!("line {line_number}: {reason}"))
                            }
                            other => other,
                        })
                })?;
                if let (Some(series_ref), Some(scoped_cache)) = (series_ref, &scoped_cache) {
                    // The parser borrows from `text`, so this is an offset into it.
                    let series_text = sample.series_text();
                    let Some(start) =
                        (series_text.as_ptr() as usize).checked_sub(text.as_ptr() as usize)
                    else {
                        continue;
                    };
                    learned.remember(
                        scoped_cache.hash(series_text),
                        start..start + series_text.len(),
                        series_ref,
                    );
                }
            }
            Entry::Metadata(line) => metadata.push(line),
        }
    }
    if let (Some(cache), Some(scoped_cache)) = (series_cache, scoped_cache) {
        cache.learn(scoped_cache, generation, text, learned);
    }
    set_metadata_of_body(metadata, appender);
    Ok(())
}

/// Hands each metric family's metadata to the appender: the lines of a
/// family applied in body order (a later HELP replaces an earlier one), as
/// the families would be in a map, without allocating per line. One
/// `MetricMetadata` is reused, so a scrape-shaped body whose metadata the
/// store already has (the appender skips unchanged metadata) allocates
/// nothing here.
fn set_metadata_of_body(mut lines: Vec<Metadata<'_>>, appender: &mut dyn Appender) {
    // Exporters write families sorted by name, each family's lines
    // together; only a body that is not in that shape pays for a sort,
    // stable so that the lines of one family keep their body order.
    if !lines.is_sorted_by(|a, b| a.metric_name <= b.metric_name) {
        lines.sort_by(|a, b| a.metric_name.cmp(&b.metric_name));
    }
    let mut family = MetricMetadata::default();
    let mut index = 0;
    while let Some(first) = lines.get(index) {
        family.metric_type.clear();
        family.help.clear();
        family.unit.clear();
        let mut end = index;
        while let Some(line) = lines.get(end)
            && line.metric_name == first.metric_name
        {
            match &line.kind {
                MetadataKind::Help(help) => {
                    family.help.clear();
                    family.help.push_str(help);
                }
                MetadataKind::Type(metric_type) => {
                    family.metric_type.clear();
                    family.metric_type.push_str(metric_type.as_str());
                }
                MetadataKind::Unit(unit) => {
                    family.unit.clear();
                    family.unit.push_str(unit);
                }
            }
            end += 1;
        }
        appender.set_metadata(&first.metric_name, &family);
        index = end;
    }
}
