//! The state stores of `storage::StateStore` on the store's redb file: one
//! redb table per `StateTable`, byte keys, byte values (postcard-encoded by
//! the caller). Each write is its own transaction with
//! `Durability::Immediate`, so a put that returned survives a crash; these
//! writes are rare (once per rule group evaluation) and small.
//!
//! Layout is: key = caller's bytes, value = caller's bytes; nothing added.

use redb::{ReadableDatabase as _, TableDefinition, TableError};

use super::{RedbContext as _, Tsdb, TsdbError, tables};
use crate::storage::{StateEntries, StateStore, StateTable, StorageError};

fn table_definition(table: StateTable) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match table {
        StateTable::Rules => tables::RULES_STATE,
        StateTable::Incidents => tables::INCIDENTS,
        StateTable::Outbox => tables::OUTBOX,
        StateTable::Silences => tables::SILENCES,
    }
}

impl Tsdb {
    fn refuse_when_poisoned(&self) -> Result<(), TsdbError> {
        match self.shared.poison_reason() {
            Some(reason) => Err(TsdbError::Poisoned(reason)),
            None => Ok(()),
        }
    }
}

impl StateStore for Tsdb {
    fn put_state(&self, table: StateTable, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.refuse_when_poisoned()?;
        let database = self.shared.database()?;
        let mut transaction = database.begin_write().context("beginning a state write")?;
        transaction
            .set_durability(redb::Durability::Immediate)
            .context("setting durability")?;
        {
            let mut opened = transaction
                .open_table(table_definition(table))
                .context("opening a state table")?;
            opened.insert(key, value).context("writing state")?;
        }
        transaction.commit().context("committing state")?;
        Ok(())
    }

    fn get_state(&self, table: StateTable, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let database = self.shared.database()?;
        let transaction = database.begin_read().context("beginning a state read")?;
        let opened = match transaction.open_table(table_definition(table)) {
            Ok(opened) => opened,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(TsdbError::from_table_error(error).into()),
        };
        let found = opened.get(key).context("reading state")?;
        Ok(found.map(|value| value.value().to_vec()))
    }

    fn delete_state(&self, table: StateTable, key: &[u8]) -> Result<bool, StorageError> {
        self.refuse_when_poisoned()?;
        let database = self.shared.database()?;
        let mut transaction = database.begin_write().context("beginning a state delete")?;
        transaction
            .set_durability(redb::Durability::Immediate)
            .context("setting durability")?;
        let existed = {
            let mut opened = transaction
                .open_table(table_definition(table))
                .context("opening a state table")?;
            opened.remove(key).context("deleting state")?.is_some()
        };
        transaction.commit().context("committing a state delete")?;
        Ok(existed)
    }

    fn scan_state(&self, table: StateTable, prefix: &[u8]) -> Result<StateEntries, StorageError> {
        let database = self.shared.database()?;
        let transaction = database.begin_read().context("beginning a state read")?;
        let opened = match transaction.open_table(table_definition(table)) {
            Ok(opened) => opened,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(TsdbError::from_table_error(error).into()),
        };
        let mut entries = Vec::new();
        for entry in opened.range(prefix..).context("scanning state")? {
            let (key, value) = entry.context("scanning state")?;
            if !key.value().starts_with(prefix) {
                break;
            }
            entries.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(entries)
    }
}

impl TsdbError {
    fn from_table_error(error: TableError) -> TsdbError {
        TsdbError::Database {
            context: "opening a state table",
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::Options;

    #[test]
    fn state_survives_reopen_and_scans_by_prefix() {
        let directory = tempfile::tempdir().unwrap();
        {
            let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
            assert_eq!(tsdb.get_state(StateTable::Rules, b"a").unwrap(), None);
            tsdb.put_state(StateTable::Rules, b"a\0one", b"1").unwrap();
            tsdb.put_state(StateTable::Rules, b"a\0two", b"2").unwrap();
            tsdb.put_state(StateTable::Rules, b"b\0one", b"3").unwrap();
            assert!(tsdb.delete_state(StateTable::Rules, b"a\0two").unwrap());
            assert!(!tsdb.delete_state(StateTable::Rules, b"a\0two").unwrap());
            tsdb.close().unwrap();
        }
        let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
        assert_eq!(
            tsdb.get_state(StateTable::Rules, b"b\0one").unwrap(),
            Some(b"3".to_vec())
        );
        assert_eq!(
            tsdb.scan_state(StateTable::Rules, b"a\0").unwrap(),
            vec![(b"a\0one".to_vec(), b"1".to_vec())]
        );
        tsdb.close().unwrap();
    }
}
