//! Prometheus remote_write 1.0 decoder (in progress).
