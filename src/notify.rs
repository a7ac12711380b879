//! Notifications (temporary header until the route types are merged).

pub mod alertmanager;
pub mod outbox;
pub mod webhook;
