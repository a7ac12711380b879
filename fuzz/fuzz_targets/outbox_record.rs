//! Fuzzes the decoders of the notification outbox's stored values (groups,
//! delivery records, pending messages, send_direct markers). None may
//! panic; whatever decodes must survive an encode/decode round trip.
#![no_main]

use guardia::notify::outbox::{
    DeliveryRecord, DirectMarker, PendingMessage, StoredGroup, decode_record, encode_record,
};
use libfuzzer_sys::fuzz_target;

macro_rules! round_trip {
    ($record_type:ty, $data:expr) => {
        if let Ok(record) = decode_record::<$record_type>($data) {
            let again = encode_record(&record).expect("a decoded record encodes");
            assert_eq!(
                decode_record::<$record_type>(&again).expect("re-decodes"),
                record
            );
        }
    };
}

fuzz_target!(|data: &[u8]| {
    round_trip!(StoredGroup, data);
    round_trip!(DeliveryRecord, data);
    round_trip!(PendingMessage, data);
    round_trip!(DirectMarker, data);
});
