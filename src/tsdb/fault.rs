//! Fault injection for crash tests: a redb storage backend over the real
//! file that can be told to fail writes and syncs (an I/O error, as a full
//! disk or a dying device would give) or to silently discard them (a power
//! cut: whatever was not synced before is lost). Tests reach it through
//! `Options::fault_injection`; production never sets it.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::StorageBackend;
use redb::backends::FileBackend;

/// Switches shared between a test and the backend it injected.
#[derive(Debug, Default)]
pub struct FaultInjection {
    fail_writes: AtomicBool,
    discard_writes: AtomicBool,
    failed_operations: AtomicU64,
}

impl FaultInjection {
    pub fn new() -> FaultInjection {
        FaultInjection::default()
    }

    /// From now on every write, length change and sync returns an I/O error.
    pub fn fail_writes(&self, enabled: bool) {
        self.fail_writes.store(enabled, Ordering::SeqCst);
    }

    /// From now on writes and syncs succeed without reaching the file: the
    /// file keeps what was synced before, as after a power cut.
    pub fn crash(&self) {
        self.discard_writes.store(true, Ordering::SeqCst);
    }

    /// Number of operations that returned an injected error.
    pub fn failed_operations(&self) -> u64 {
        self.failed_operations.load(Ordering::SeqCst)
    }

    fn check(&self) -> io::Result<bool> {
        if self.fail_writes.load(Ordering::SeqCst) {
            self.failed_operations.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other("injected write failure"));
        }
        Ok(self.discard_writes.load(Ordering::SeqCst))
    }
}

#[derive(Debug)]
pub struct FaultInjectingBackend {
    inner: FileBackend,
    faults: std::sync::Arc<FaultInjection>,
}

impl FaultInjectingBackend {
    pub fn new(
        file: File,
        faults: std::sync::Arc<FaultInjection>,
    ) -> Result<FaultInjectingBackend, redb::DatabaseError> {
        Ok(FaultInjectingBackend {
            inner: FileBackend::new(file)?,
            faults,
        })
    }
}

impl StorageBackend for FaultInjectingBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.faults.check()? {
            return Ok(());
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.faults.check()? {
            return Ok(());
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.faults.check()? {
            return Ok(());
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
