//! Fuzzes the rule-file parser and validator: any text must parse or fail
//! with errors, never panic; a file that parses has unique group names,
//! and rules with a name and an expression.
#![no_main]

use guardia::rules::parse_rule_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match parse_rule_file("fuzz.yml", text) {
        Ok(file) => {
            let mut names = std::collections::BTreeSet::new();
            for group in &file.groups {
                assert!(names.insert(group.name.clone()));
                for rule in &group.rules {
                    assert!(!rule.name.is_empty());
                    assert!(!rule.expr.trim().is_empty());
                }
            }
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
});
