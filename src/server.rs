//! Wiring of storage, API and background tasks (in progress).
