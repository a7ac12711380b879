//! Fuzzes Alertmanager's matcher syntax (`config::matcher`, used by routes,
//! inhibit rules, SLA policies and the silence API's `filter=`): any text
//! parses or fails with an error, never panics; what parses with classic
//! label names prints back to text that parses to the same matchers (or is
//! refused: the printer escapes more than the parser reads).
#![no_main]

use guardia::config::matcher::parse_matchers;
use guardia::model::Labels;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(matchers) = parse_matchers(text) else {
        return;
    };
    let printed: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    let classic_names = matchers
        .iter()
        .all(|matcher| guardia::model::is_legacy_label_name(&matcher.name));
    if classic_names && let Ok(reparsed) = parse_matchers(&printed.join(",")) {
        assert_eq!(reparsed, matchers, "{printed:?}");
    }
    let labels = Labels::from_pairs(
        matchers
            .iter()
            .map(|matcher| (matcher.name.clone(), matcher.value.clone())),
    );
    let _ = guardia::model::matches_all(&matchers, &labels);
});
