//! The stored symbol table of label strings: each distinct label name and
//! value is written once to the `symbols` table (id → string), and a
//! `series` row is a list of (name id, value id) pairs. Scrape targets
//! repeat the same names, metric names and instances across hundreds of
//! series, so a row shrinks from ~80 bytes of text to a few varints.
//!
//! Ids are dense (0, 1, 2, …), allocated by the commit thread in the same
//! transaction as the series rows that first use them, and never reused or
//! deleted (symbols of series removed by retention stay: the table grows
//! with the number of distinct strings ever seen, not with series).

use std::collections::HashMap;

use redb::{ReadableTable, Table};

use crate::model::{Label, Labels};
use crate::tsdb::encoding::{EncodingError, Reader, put_uvarint};
use crate::tsdb::{RedbContext, TsdbError};

// Layout is (series row, format version 2):
//
//   varint   label count L
//   L times: varint name symbol id, varint value symbol id
//
// Names strictly ascending (compared as strings), values non-empty: the
// canonical `Labels` form. Symbol ids index the `symbols` table.

/// Symbol ids of the store, kept by the commit thread.
#[derive(Debug, Default)]
pub struct SeriesSymbols {
    ids: HashMap<String, u64>,
}

impl SeriesSymbols {
    /// The table as loaded at start: `strings[id]` is symbol `id`.
    pub fn from_strings(strings: &[String]) -> SeriesSymbols {
        SeriesSymbols {
            ids: strings
                .iter()
                .enumerate()
                .map(|(id, string)| (string.clone(), id as u64))
                .collect(),
        }
    }

    fn id_of(
        &mut self,
        table: &mut Table<'_, u64, &'static str>,
        string: &str,
    ) -> Result<u64, TsdbError> {
        if let Some(&id) = self.ids.get(string) {
            return Ok(id);
        }
        let id = self.ids.len() as u64;
        table.insert(id, string).context("writing a symbol")?;
        self.ids.insert(string.to_string(), id);
        Ok(id)
    }

    /// Encodes a label set as a series row, writing symbols it introduces
    /// into `table` (the same transaction as the row). If that transaction
    /// does not commit, the store is poisoned, so ids handed out here for
    /// lost symbols are never used by a later commit.
    pub fn encode_labels<'a>(
        &mut self,
        table: &mut Table<'_, u64, &'static str>,
        pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<u8>, TsdbError> {
        let mut out = Vec::with_capacity(1 + pairs.len() * 4);
        put_uvarint(&mut out, pairs.len() as u64);
        for (name, value) in pairs {
            let name_id = self.id_of(table, name)?;
            let value_id = self.id_of(table, value)?;
            put_uvarint(&mut out, name_id);
            put_uvarint(&mut out, value_id);
        }
        Ok(out)
    }
}

/// Reads the whole `symbols` table; ids must be dense from 0.
pub fn load_symbols(
    table: &impl ReadableTable<u64, &'static str>,
) -> Result<Vec<String>, TsdbError> {
    let mut strings = Vec::new();
    for entry in table.iter().context("reading symbols")? {
        let (id, string) = entry.context("reading a symbol")?;
        if id.value() != strings.len() as u64 {
            return Err(TsdbError::Corrupt(format!(
                "symbol id {} where {} was expected",
                id.value(),
                strings.len()
            )));
        }
        strings.push(string.value().to_string());
    }
    Ok(strings)
}

/// Decodes a series row against the loaded symbols and checks that the
/// label set is canonical. Never panics, whatever the bytes.
pub fn decode_labels(bytes: &[u8], symbols: &[String]) -> Result<Labels, EncodingError> {
    let mut reader = Reader::new(bytes);
    let count = reader.uvarint()?;
    // Each label takes at least 2 bytes.
    if count > (reader.remaining() / 2) as u64 {
        return Err(EncodingError::Truncated);
    }
    let mut labels: Vec<Label> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name = symbol(symbols, reader.uvarint()?)?;
        let value = symbol(symbols, reader.uvarint()?)?;
        if value.is_empty() || labels.last().is_some_and(|last| last.name.as_str() >= name) {
            return Err(EncodingError::NonCanonicalLabels);
        }
        labels.push(Label::new(name, value));
    }
    reader.finish()?;
    Ok(Labels::new(labels))
}

fn symbol(symbols: &[String], id: u64) -> Result<&str, EncodingError> {
    usize::try_from(id)
        .ok()
        .and_then(|id| symbols.get(id))
        .map(String::as_str)
        .ok_or(EncodingError::UnknownSymbol(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::encoding::encode_labels as encode_text_labels;
    use proptest::prelude::*;

    fn row(pairs: &[(u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        put_uvarint(&mut out, pairs.len() as u64);
        for (name, value) in pairs {
            put_uvarint(&mut out, *name);
            put_uvarint(&mut out, *value);
        }
        out
    }

    #[test]
    fn rows_decode_against_symbols_and_must_be_canonical() {
        let symbols: Vec<String> = ["__name__", "up", "instance", "a:1", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let labels = decode_labels(&row(&[(0, 1), (2, 3)]), &symbols).unwrap();
        assert_eq!(
            labels,
            Labels::new(vec![
                Label::new("__name__", "up"),
                Label::new("instance", "a:1")
            ])
        );
        assert_eq!(
            decode_labels(&row(&[(2, 3), (0, 1)]), &symbols),
            Err(EncodingError::NonCanonicalLabels)
        );
        assert_eq!(
            decode_labels(&row(&[(0, 4)]), &symbols),
            Err(EncodingError::NonCanonicalLabels)
        );
        assert_eq!(
            decode_labels(&row(&[(0, 9)]), &symbols),
            Err(EncodingError::UnknownSymbol(9))
        );
        let mut trailing = row(&[(0, 1)]);
        trailing.push(0);
        assert!(decode_labels(&trailing, &symbols).is_err());
        assert!(decode_labels(&[0xff, 0xff, 0xff, 0x0f], &symbols).is_err());
        // Rows are far smaller than the text encoding they replace.
        let text = encode_text_labels([("__name__", "up"), ("instance", "a:1")].into_iter());
        assert!(row(&[(0, 1), (2, 3)]).len() * 3 < text.len());
    }

    proptest! {
        #[test]
        fn arbitrary_rows_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let symbols: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
            let _ = decode_labels(&bytes, &symbols);
        }
    }
}
