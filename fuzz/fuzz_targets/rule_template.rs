//! Fuzzes the Go-template parser and executor used by alert labels and
//! annotations: any text must parse or fail with an error, never panic, and
//! a template that parses must run (with a query function that answers)
//! to an output or an error, never a panic.
#![no_main]

use guardia::rules::template::{QueryRows, Template, alert_template_data};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(template) = Template::parse("__alert_Fuzz", text) else {
        return;
    };
    let data = alert_template_data(
        &[("instance", "host:9100"), ("job", "node")],
        &[("site", "north")],
        "http://guardia.example",
        42.5,
    );
    let query = |expression: &str| -> Result<QueryRows, String> {
        if expression.is_empty() {
            return Err("empty query".to_string());
        }
        Ok(vec![(vec![("instance".to_string(), expression.to_string())], 1.0)])
    };
    let _ = template.execute(&data, Some(&query));
});
