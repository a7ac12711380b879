//! The printing side of the text formats: one sample, `# HELP` or `# TYPE`
//! line at a time, in either format, such that [`super::TextParser`]
//! accepts every line printed here and gives back the same sample. Names
//! that are not legacy names are quoted (Prometheus 3.x UTF-8 names).

use super::number::{write_openmetrics_timestamp, write_sample_value};
use super::{Format, MetricType};
use crate::model::{METRIC_NAME, is_legacy_label_name, is_legacy_metric_name};

/// Appends one sample line (with its `\n`). A `("__name__", …)` pair in
/// `labels` is skipped, so sorted pairs from
/// [`super::SampleBuf::with_sorted_label_pairs`] can be passed as they are.
/// OpenMetrics output needs a final [`write_openmetrics_eof`].
pub fn write_sample(
    out: &mut String,
    metric_name: &str,
    labels: &[(&str, &str)],
    value: f64,
    timestamp_ms: Option<i64>,
    format: Format,
) {
    let name_is_legacy = is_legacy_metric_name(metric_name);
    let mut label_set_open = false;
    if name_is_legacy {
        out.push_str(metric_name);
    } else {
        out.push('{');
        write_quoted(out, metric_name);
        label_set_open = true;
    }
    for (label_name, label_value) in labels {
        if *label_name == METRIC_NAME {
            continue;
        }
        out.push_str(if label_set_open { "," } else { "{" });
        label_set_open = true;
        if is_legacy_label_name(label_name) {
            out.push_str(label_name);
        } else {
            write_quoted(out, label_name);
        }
        out.push('=');
        write_quoted(out, label_value);
    }
    if label_set_open {
        out.push('}');
    }
    out.push(' ');
    write_sample_value(out, value);
    if let Some(timestamp_ms) = timestamp_ms {
        out.push(' ');
        match format {
            Format::Prometheus => {
                use std::fmt::Write as _;
                let _ = write!(out, "{timestamp_ms}");
            }
            Format::OpenMetrics => write_openmetrics_timestamp(out, timestamp_ms),
        }
    }
    out.push('\n');
}

/// Appends a `# HELP` line. Backslashes and line feeds are escaped in both
/// formats; double quotes only in OpenMetrics, which defines that escape.
pub fn write_help(out: &mut String, metric_name: &str, help: &str, format: Format) {
    out.push_str("# HELP ");
    write_metadata_name(out, metric_name);
    out.push(' ');
    for character in help.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            other => out.push(other),
        }
    }
    out.push('\n');
}

/// Appends a `# TYPE` line. Prometheus text has no word for the
/// OpenMetrics-only types, so it gets `untyped` for those.
pub fn write_type(out: &mut String, metric_name: &str, metric_type: MetricType, format: Format) {
    out.push_str("# TYPE ");
    write_metadata_name(out, metric_name);
    out.push(' ');
    let word = match (format, metric_type) {
        (Format::Prometheus, MetricType::Unknown) => "untyped",
        (
            Format::Prometheus,
            MetricType::GaugeHistogram | MetricType::Info | MetricType::StateSet,
        ) => "untyped",
        (_, other) => other.as_str(),
    };
    out.push_str(word);
    out.push('\n');
}

/// Appends the `# EOF` line that must end OpenMetrics text.
pub fn write_openmetrics_eof(out: &mut String) {
    out.push_str("# EOF\n");
}

fn write_metadata_name(out: &mut String, metric_name: &str) {
    if is_legacy_metric_name(metric_name) {
        out.push_str(metric_name);
    } else {
        write_quoted(out, metric_name);
    }
}

fn write_quoted(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out.push('"');
}
