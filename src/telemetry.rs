//! guardia's own metrics, served on `/metrics`. Counters, gauges and
//! histograms are plain atomics so hot paths pay one relaxed add; each module
//! keeps its own statics and writes them with [`Exposition`] when asked.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, stored as f64 bits.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicU64::new(0))
    }

    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Upper bounds (seconds) used for latency histograms: 100 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// A cumulative histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds, so it stays an integer atomic.
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(self.buckets.iter()) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Writes the Prometheus text exposition format.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let escaped = label_value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{label}=\"{escaped}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "counter", help);
        self.line(name, &[], value as f64);
    }

    /// A counter family with one label dimension.
    pub fn counter_vec(&mut self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        self.header(name, "counter", help);
        for (label_value, value) in values {
            self.line(name, &[(label, label_value)], *value as f64);
        }
    }

    /// A counter whose value is not a whole number (CPU seconds).
    pub fn counter_f64(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "counter", help);
        self.line(name, &[], value);
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        self.line(name, &[], value);
    }

    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, "histogram", help);
        let bucket_name = format!("{name}_bucket");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(histogram.buckets.iter()) {
            let le = format_value(*bound);
            self.line(
                &bucket_name,
                &[("le", &le)],
                bucket.load(Ordering::Relaxed) as f64,
            );
        }
        let count = histogram.count() as f64;
        self.line(&bucket_name, &[("le", "+Inf")], count);
        let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        self.line(&format!("{name}_sum"), &[], sum);
        self.line(&format!("{name}_count"), &[], count);
    }

    /// Starts a metric family whose samples carry labels; follow with
    /// [`Exposition::sample`] or [`Exposition::histogram_sample`].
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.header(name, kind, help);
    }

    /// One sample line with any number of labels, after [`Exposition::family`].
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.line(name, labels, value);
    }

    /// The bucket, sum and count lines of one labelled histogram of a
    /// family started with [`Exposition::family`] (kind `histogram`).
    pub fn histogram_sample(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let bucket_name = format!("{name}_bucket");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(histogram.buckets.iter()) {
            let le = format_value(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.line(
                &bucket_name,
                &with_le,
                bucket.load(Ordering::Relaxed) as f64,
            );
        }
        let count = histogram.count() as f64;
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.line(&bucket_name, &with_le, count);
        let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        self.line(&format!("{name}_sum"), labels, sum);
        self.line(&format!("{name}_count"), labels, count);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Prometheus's float formatting: `+Inf`, `-Inf`, `NaN`, shortest round-trip otherwise.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let histogram = Histogram::new();
        histogram.observe(0.0002);
        histogram.observe(2.0);
        let mut exposition = Exposition::new();
        exposition.histogram("x_seconds", "test", &histogram);
        let text = exposition.finish();
        assert!(
            text.contains("x_seconds_bucket{le=\"0.00025\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_count 2\n"), "{text}");
    }
}
