//! Fuzzes the stored incident record decoder (`sla::manager`): any bytes
//! decode or fail with an error, never panic; what decodes re-encodes to
//! a record that decodes to the same incident, whose state and timeline
//! helpers never panic either.
#![no_main]

use guardia::sla::manager::{decode_incident_record, encode_incident_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(incident) = decode_incident_record(bytes) else {
        return;
    };
    let _ = incident.state();
    let _ = incident.current_round();
    let _ = incident.current_tier();
    let _ = incident.is_finished();
    let encoded = encode_incident_record(&incident).expect("a decoded incident encodes");
    let again = decode_incident_record(&encoded).expect("an encoded incident decodes");
    assert_eq!(again, incident);
});
