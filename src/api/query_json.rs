//! Prometheus's JSON rendering of query results: `resultType` and `result`,
//! sample values as strings in Go's `strconv.FormatFloat(v, 'f', -1, 64)`
//! form (`+Inf`, `-Inf`, `NaN`, otherwise the shortest decimal that reads
//! back to the same float, never an exponent), timestamps as Unix seconds
//! with at most three decimals (`1700000000`, `1700000000.5`), and the
//! success envelope with `warnings`/`infos` only when non-empty.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Number, Value};

use crate::api::series::labels_to_json;
use crate::model::{Sample, Timestamp};
use crate::promql::{QueryResult, Value as QueryValue};

/// A sample value as Prometheus writes it.
pub fn format_sample_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's `Display` for f64 is the shortest round-trip decimal without
        // an exponent, as Go's 'f' format with precision -1 is.
        value.to_string()
    }
}

/// Milliseconds as a JSON number of seconds: an integer when whole, so
/// `1700000000` and not `1700000000.0`, as Prometheus's encoder writes it.
pub fn timestamp_json(t: Timestamp) -> Value {
    if t % 1000 == 0 {
        Value::Number(Number::from(t / 1000))
    } else {
        // Division is correctly rounded, so the shortest decimal of the
        // quotient is exactly the seconds with their millisecond fraction.
        Number::from_f64(t as f64 / 1000.0)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

fn point_json(t: Timestamp, value: String) -> Value {
    Value::Array(vec![timestamp_json(t), Value::String(value)])
}

fn samples_json(samples: &[Sample]) -> Value {
    Value::Array(
        samples
            .iter()
            .map(|sample| point_json(sample.t, format_sample_value(sample.v)))
            .collect(),
    )
}

/// `{"resultType":..,"result":..}`.
pub fn query_data_json(value: &QueryValue) -> Value {
    let result = match value {
        QueryValue::Scalar { t, v } => point_json(*t, format_sample_value(*v)),
        QueryValue::String { t, value } => point_json(*t, value.clone()),
        QueryValue::Vector(samples) => Value::Array(
            samples
                .iter()
                .map(|sample| {
                    let mut object = Map::new();
                    object.insert("metric".into(), labels_to_json(&sample.labels));
                    object.insert(
                        "value".into(),
                        point_json(sample.t, format_sample_value(sample.v)),
                    );
                    Value::Object(object)
                })
                .collect(),
        ),
        QueryValue::Matrix(series) => Value::Array(
            series
                .iter()
                .map(|one_series| {
                    let mut object = Map::new();
                    object.insert("metric".into(), labels_to_json(&one_series.labels));
                    object.insert("values".into(), samples_json(&one_series.samples));
                    Value::Object(object)
                })
                .collect(),
        ),
    };
    let mut data = Map::new();
    data.insert("resultType".into(), Value::from(value.result_type()));
    data.insert("result".into(), result);
    Value::Object(data)
}

/// The whole success body of a query.
pub fn query_body_json(result: &QueryResult) -> Value {
    let mut body = Map::new();
    body.insert("status".into(), Value::from("success"));
    body.insert("data".into(), query_data_json(&result.value));
    if !result.warnings.is_empty() {
        body.insert("warnings".into(), Value::from(result.warnings.clone()));
    }
    if !result.infos.is_empty() {
        body.insert("infos".into(), Value::from(result.infos.clone()));
    }
    Value::Object(body)
}

pub fn query_response(result: &QueryResult) -> Response {
    Json(query_body_json(result)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_like_go_strconv() {
        assert_eq!(format_sample_value(1.0), "1");
        assert_eq!(format_sample_value(-0.0), "-0");
        assert_eq!(format_sample_value(0.1), "0.1");
        assert_eq!(format_sample_value(1.0 / 3.0), "0.3333333333333333");
        assert_eq!(format_sample_value(1e21), "1000000000000000000000");
        assert_eq!(format_sample_value(1.5e-7), "0.00000015");
        assert_eq!(format_sample_value(f64::INFINITY), "+Inf");
        assert_eq!(format_sample_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_sample_value(f64::NAN), "NaN");
        assert_eq!(
            format_sample_value(f64::from_bits(0x7ff0_0000_0000_0002)),
            "NaN"
        );
    }

    #[test]
    fn timestamps_are_seconds_with_millisecond_fractions() {
        assert_eq!(timestamp_json(1_700_000_000_000).to_string(), "1700000000");
        assert_eq!(
            timestamp_json(1_700_000_000_123).to_string(),
            "1700000000.123"
        );
        assert_eq!(timestamp_json(1_500).to_string(), "1.5");
        assert_eq!(timestamp_json(-1_500).to_string(), "-1.5");
        assert_eq!(timestamp_json(10).to_string(), "0.01");
    }
}
