//! Prometheus / OpenMetrics text exposition parser (in progress).
