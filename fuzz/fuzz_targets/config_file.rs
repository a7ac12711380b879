//! Fuzzes the configuration file parser and the file_sd target-file parser:
//! any text must parse or fail with an error, never panic; a configuration
//! that parses must have its invariants (timeout within interval, unique
//! job names).
#![no_main]

use std::path::Path;

use guardia::config::file::parse_config;
use guardia::scrape::discovery::{parse_http_groups, parse_target_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(config) = parse_config(text) {
        assert!(config.global.scrape_timeout <= config.global.scrape_interval);
        let mut names = std::collections::BTreeSet::new();
        for job in &config.scrape_configs {
            assert!(job.scrape_timeout <= job.scrape_interval);
            assert!(names.insert(job.job_name.clone()));
        }
    }
    let _ = parse_target_file(Path::new("targets.yml"), text);
    let _ = parse_target_file(Path::new("targets.json"), text);
    let _ = parse_http_groups("http://sd.example/targets", bytes);
});
