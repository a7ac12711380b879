//! SLA response clocks (issue 6). This file owns the module map; the pure
//! time math lives in [`calendar`] (which instants a support contract covers,
//! how much covered time lies between two instants, when a target falls due)
//! and [`policy`] (which contract an alert falls under, with its targets and
//! escalation tiers in milliseconds of covered time). [`ics`] reads holiday
//! files. Everything here is a function of its arguments: no clock is read.

pub mod calendar;
pub mod heartbeat;
pub mod ics;
pub mod incident;
pub mod manager;
pub mod policy;
pub mod report;
