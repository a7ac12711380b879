//! TEMPORARY module header (sla-clock owns it; merged later).

pub mod calendar;
pub mod heartbeat;
pub mod incident;
pub mod manager;
pub mod policy;
pub mod report;
