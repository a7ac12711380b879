//! Scraping: the target manager (discovery → relabeling → one loop per
//! target), the scrape loop (HTTP, parse off the runtime, limits, staleness
//! markers, one durable commit per scrape), and the state `/api/v1/targets`
//! shows.

pub mod md5;
pub mod relabel;
