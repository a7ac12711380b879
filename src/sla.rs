//! TEMPORARY module header (sla-clock owns it; merged later).

pub mod calendar;
pub mod policy;
