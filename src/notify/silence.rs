//! Silences in Alertmanager's model: a set of matchers and a time window
//! during which matching alerts are not notified. Every change is durable in
//! `StateTable::Silences` before it is visible; the whole set is also kept in
//! memory (silences are few) so `is_silenced` never touches storage.
//!
//! Lifecycle, as Alertmanager's `silence/silence.go` defines it: *pending*
//! before `startsAt`, *active* until `endsAt`, then *expired*. Expiring an
//! active silence moves its end to now; a pending one gets start = end =
//! now. An update keeps the id only when the matchers are unchanged and the
//! time change is allowed in the current state (an active silence keeps its
//! start and cannot end in the past; a pending one cannot start in the past;
//! an expired one cannot change); otherwise the old silence is expired and a
//! new one with a new id replaces it. Expired silences are kept for
//! [`EXPIRED_RETENTION`] after their end, then dropped.
//!
//! Stored layout (one row per silence):
//!
//! ```text
//! key:   silence id, UTF-8 (a UUID v4 string)
//! value: [format version: u8 = 1] [postcard(StoredSilence)]
//! StoredSilence = { id: str, matchers: [{ name: str, value: str, is_regex: bool,
//!                   is_equal: bool }], starts_at: i64 ms, ends_at: i64 ms,
//!                   updated_at: i64 ms, created_by: str, comment: str }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::NotifyError;
use crate::clock::Clock;
use crate::model::{Labels, MatchOp, Matcher, Timestamp};
use crate::storage::{StateStore, StateTable};

/// Alertmanager's default `--data.retention`: expired silences stay
/// listable this long after their end.
pub const EXPIRED_RETENTION: Duration = Duration::from_secs(5 * 24 * 3600);

/// The format version byte in front of every stored silence.
const STORED_FORMAT_VERSION: u8 = 1;

/// One matcher of a silence, in the API's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    /// False for `!=` / `!~`.
    pub is_equal: bool,
}

impl SilenceMatcher {
    pub fn op(&self) -> MatchOp {
        match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        }
    }

    pub fn from_matcher(matcher: &Matcher) -> SilenceMatcher {
        SilenceMatcher {
            name: matcher.name.clone(),
            value: matcher.value.clone(),
            is_regex: matches!(matcher.op, MatchOp::Regex | MatchOp::NotRegex),
            is_equal: matches!(matcher.op, MatchOp::Equal | MatchOp::Regex),
        }
    }

    fn compile(&self) -> Result<Matcher, NotifyError> {
        if self.name.is_empty() {
            return Err(NotifyError::InvalidSilence(
                "invalid label matcher: empty label name".to_string(),
            ));
        }
        Matcher::new(self.op(), self.name.clone(), self.value.clone())
            .map_err(|error| NotifyError::InvalidSilence(format!("invalid label matcher: {error}")))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SilenceState {
    // Declared in Alertmanager's listing order.
    Active,
    Pending,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Active => "active",
            SilenceState::Pending => "pending",
            SilenceState::Expired => "expired",
        }
    }
}

/// A stored silence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn state_at(&self, now: Timestamp) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }
}

/// A silence to create, or to update when `id` is set (POST body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SilenceRequest {
    pub id: Option<String>,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
}

struct LiveSilence {
    silence: Silence,
    compiled: Vec<Matcher>,
}

/// All silences: durable in the state store, mirrored in memory.
pub struct Silences {
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    by_id: RwLock<BTreeMap<String, LiveSilence>>,
    /// Serialises writers so that the store and the map change in the same
    /// order, without holding the map's lock across an fsync.
    write_order: Mutex<()>,
}

impl std::fmt::Debug for Silences {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Silences")
            .field("count", &self.by_id.read().len())
            .finish()
    }
}

impl Silences {
    /// Loads every stored silence and drops the ones past retention. A row
    /// that does not decode is skipped with a warning, not fatal: one bad
    /// row must not keep the server from starting.
    pub fn open(
        store: Arc<dyn StateStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Silences>, NotifyError> {
        let mut by_id = BTreeMap::new();
        for (key, value) in store.scan_state(StateTable::Silences, b"")? {
            match decode_stored(&value).and_then(|silence| {
                let compiled = compile_all(&silence.matchers)?;
                Ok(LiveSilence { silence, compiled })
            }) {
                Ok(live) => {
                    by_id.insert(live.silence.id.clone(), live);
                }
                Err(error) => {
                    tracing::warn!(
                        key = %String::from_utf8_lossy(&key),
                        %error,
                        "skipping a stored silence that does not decode"
                    );
                }
            }
        }
        let silences = Arc::new(Silences {
            store,
            clock,
            by_id: RwLock::new(by_id),
            write_order: Mutex::new(()),
        });
        silences.garbage_collect()?;
        Ok(silences)
    }

    /// True when an active silence matches every label of `labels`' matchers.
    pub fn is_silenced(&self, labels: &Labels, now: Timestamp) -> bool {
        self.by_id.read().values().any(|live| {
            live.silence.state_at(now) == SilenceState::Active
                && crate::model::matches_all(&live.compiled, labels)
        })
    }

    /// Ids of the active silences matching `labels`, for alert status.
    pub fn silenced_by(&self, labels: &Labels, now: Timestamp) -> Vec<String> {
        self.by_id
            .read()
            .values()
            .filter(|live| {
                live.silence.state_at(now) == SilenceState::Active
                    && crate::model::matches_all(&live.compiled, labels)
            })
            .map(|live| live.silence.id.clone())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Silence> {
        self.by_id.read().get(id).map(|live| live.silence.clone())
    }

    /// Every silence (expired ones within retention included) whose
    /// matchers satisfy `filter`, in Alertmanager's order: active by end,
    /// pending by start, expired by end, newest first.
    pub fn list(&self, filter: &[Matcher]) -> Vec<Silence> {
        let now = self.clock.now_ms();
        let mut listed: Vec<Silence> = self
            .by_id
            .read()
            .values()
            .filter(|live| silence_matches_filter(&live.silence, filter))
            .map(|live| live.silence.clone())
            .collect();
        listed.sort_by(|left, right| {
            let (left_state, right_state) = (left.state_at(now), right.state_at(now));
            left_state.cmp(&right_state).then_with(|| match left_state {
                SilenceState::Active => left.ends_at.cmp(&right.ends_at),
                SilenceState::Pending => left.starts_at.cmp(&right.starts_at),
                SilenceState::Expired => right.ends_at.cmp(&left.ends_at),
            })
        });
        listed
    }

    /// Creates a silence, or updates the one named by `request.id`; returns
    /// the id of the silence that now holds the request (a new one when
    /// the update could not be done in place).
    pub fn create_or_update(&self, request: SilenceRequest) -> Result<String, NotifyError> {
        let now = self.clock.now_ms();
        let compiled = validate_request(&request, now)?;
        let _writer = self.write_order.lock();
        let previous = match &request.id {
            Some(id) if !id.is_empty() => Some(
                self.get(id)
                    .ok_or_else(|| NotifyError::SilenceNotFound(id.clone()))?,
            ),
            _ => None,
        };
        if let Some(previous) = &previous
            && can_update_in_place(previous, &request, now)
        {
            let updated = Silence {
                id: previous.id.clone(),
                matchers: request.matchers,
                starts_at: request.starts_at,
                ends_at: request.ends_at,
                updated_at: now,
                created_by: request.created_by,
                comment: request.comment,
            };
            self.persist(updated, compiled)?;
            return Ok(previous.id.clone());
        }
        let created = Silence {
            id: uuid::Uuid::new_v4().to_string(),
            matchers: request.matchers,
            starts_at: request.starts_at.max(now),
            ends_at: request.ends_at,
            updated_at: now,
            created_by: request.created_by,
            comment: request.comment,
        };
        let created_id = created.id.clone();
        if let Some(previous) = previous
            && previous.state_at(now) != SilenceState::Expired
        {
            let expired = expired_copy(previous, now);
            let expired_compiled = compile_all(&expired.matchers)?;
            self.persist(expired, expired_compiled)?;
        }
        self.persist(created, compiled)?;
        Ok(created_id)
    }

    /// Expires a silence now (`DELETE /api/v2/silence/{id}`).
    pub fn expire(&self, id: &str) -> Result<(), NotifyError> {
        let now = self.clock.now_ms();
        let _writer = self.write_order.lock();
        let silence = self
            .get(id)
            .ok_or_else(|| NotifyError::SilenceNotFound(id.to_string()))?;
        if silence.state_at(now) == SilenceState::Expired {
            return Err(NotifyError::SilenceAlreadyExpired(id.to_string()));
        }
        let expired = expired_copy(silence, now);
        let compiled = compile_all(&expired.matchers)?;
        self.persist(expired, compiled)
    }

    /// Drops silences that ended more than [`EXPIRED_RETENTION`] ago;
    /// returns how many. Run at open and periodically by the server.
    pub fn garbage_collect(&self) -> Result<usize, NotifyError> {
        let now = self.clock.now_ms();
        let retention_ms = EXPIRED_RETENTION.as_millis() as i64;
        let _writer = self.write_order.lock();
        let doomed: Vec<String> = self
            .by_id
            .read()
            .values()
            .filter(|live| live.silence.ends_at.saturating_add(retention_ms) < now)
            .map(|live| live.silence.id.clone())
            .collect();
        for id in &doomed {
            self.store
                .delete_state(StateTable::Silences, id.as_bytes())?;
            self.by_id.write().remove(id);
        }
        Ok(doomed.len())
    }

    pub fn len(&self) -> usize {
        self.by_id.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.read().is_empty()
    }

    fn persist(&self, silence: Silence, compiled: Vec<Matcher>) -> Result<(), NotifyError> {
        let value = encode_stored(&silence)?;
        self.store
            .put_state(StateTable::Silences, silence.id.as_bytes(), &value)?;
        self.by_id
            .write()
            .insert(silence.id.clone(), LiveSilence { silence, compiled });
        Ok(())
    }
}

fn expired_copy(mut silence: Silence, now: Timestamp) -> Silence {
    match silence.state_at(now) {
        SilenceState::Active => silence.ends_at = now,
        SilenceState::Pending => {
            silence.starts_at = now;
            silence.ends_at = now;
        }
        SilenceState::Expired => {}
    }
    silence.updated_at = now;
    silence
}

/// Alertmanager's `canUpdate`: same matchers, and a time change the current
/// state allows.
fn can_update_in_place(previous: &Silence, request: &SilenceRequest, now: Timestamp) -> bool {
    if previous.matchers != request.matchers {
        return false;
    }
    match previous.state_at(now) {
        SilenceState::Active => request.starts_at == previous.starts_at && request.ends_at >= now,
        SilenceState::Pending => request.starts_at >= now,
        SilenceState::Expired => false,
    }
}

fn compile_all(matchers: &[SilenceMatcher]) -> Result<Vec<Matcher>, NotifyError> {
    matchers.iter().map(SilenceMatcher::compile).collect()
}

fn validate_request(request: &SilenceRequest, now: Timestamp) -> Result<Vec<Matcher>, NotifyError> {
    let invalid = |message: &str| Err(NotifyError::InvalidSilence(message.to_string()));
    if request.matchers.is_empty() {
        return invalid("at least one matcher required");
    }
    let compiled = compile_all(&request.matchers)?;
    if compiled.iter().all(Matcher::matches_empty) {
        return invalid("at least one matcher must not match the empty string");
    }
    if request.ends_at <= request.starts_at {
        return invalid("start time must be before end time");
    }
    if request.ends_at < now {
        return invalid("end time can't be in the past");
    }
    if request.created_by.is_empty() {
        return invalid("createdBy must not be empty");
    }
    if request.comment.is_empty() {
        return invalid("comment must not be empty");
    }
    Ok(compiled)
}

/// The `filter=` of `GET /api/v2/silences`, as Alertmanager applies it: a
/// filter matcher is tested against the value of the silence's matcher of
/// the same name; an equality filter for the empty value passes when the
/// silence has no such matcher, an inequality one when it has.
fn silence_matches_filter(silence: &Silence, filter: &[Matcher]) -> bool {
    filter.iter().all(|filter_matcher| {
        let value = silence
            .matchers
            .iter()
            .find(|matcher| matcher.name == filter_matcher.name)
            .map(|matcher| matcher.value.as_str());
        let negative = matches!(filter_matcher.op, MatchOp::NotEqual | MatchOp::NotRegex);
        if filter_matcher.value.is_empty() && (value.is_some() == negative) {
            return true;
        }
        filter_matcher.matches(value.unwrap_or(""))
    })
}

fn encode_stored(silence: &Silence) -> Result<Vec<u8>, NotifyError> {
    let mut bytes = vec![STORED_FORMAT_VERSION];
    let body = postcard::to_allocvec(silence).map_err(|error| NotifyError::CorruptState {
        key: silence.id.clone(),
        reason: format!("encoding: {error}"),
    })?;
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Decodes a stored silence; never panics on any input.
pub fn decode_stored(bytes: &[u8]) -> Result<Silence, NotifyError> {
    let corrupt = |reason: String| NotifyError::CorruptState {
        key: String::new(),
        reason,
    };
    match bytes.split_first() {
        Some((&STORED_FORMAT_VERSION, body)) => postcard::from_bytes(body)
            .map_err(|error| corrupt(format!("silence does not decode: {error}"))),
        Some((version, _)) => Err(corrupt(format!("unknown silence format version {version}"))),
        None => Err(corrupt("empty silence value".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::tsdb::{Options, Tsdb};

    const MINUTE: i64 = 60_000;
    const START: Timestamp = 1_800_000_000_000;

    struct Fixture {
        _directory: tempfile::TempDir,
        store: Arc<Tsdb>,
        clock: ManualClock,
        silences: Arc<Silences>,
    }

    fn fixture() -> Fixture {
        let directory = tempfile::tempdir().unwrap();
        let store = Tsdb::open(directory.path(), Options::default()).unwrap();
        let clock = ManualClock::new(START);
        let silences = Silences::open(store.clone(), Arc::new(clock.clone())).unwrap();
        Fixture {
            _directory: directory,
            store,
            clock,
            silences,
        }
    }

    fn matcher(name: &str, value: &str, is_regex: bool, is_equal: bool) -> SilenceMatcher {
        SilenceMatcher {
            name: name.to_string(),
            value: value.to_string(),
            is_regex,
            is_equal,
        }
    }

    fn request(
        matchers: Vec<SilenceMatcher>,
        starts_at: Timestamp,
        ends_at: Timestamp,
    ) -> SilenceRequest {
        SilenceRequest {
            id: None,
            matchers,
            starts_at,
            ends_at,
            created_by: "ops".to_string(),
            comment: "maintenance".to_string(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn a_silence_is_pending_then_active_then_expired() {
        let fixture = fixture();
        let id = fixture
            .silences
            .create_or_update(request(
                vec![
                    matcher("instance", "db-.*", true, true),
                    matcher("env", "dev", false, false),
                ],
                START + 10 * MINUTE,
                START + 70 * MINUTE,
            ))
            .unwrap();
        let db = labels(&[("instance", "db-1"), ("env", "prod")]);
        let dev = labels(&[("instance", "db-1"), ("env", "dev")]);
        let silence = fixture.silences.get(&id).unwrap();
        assert_eq!(silence.state_at(START), SilenceState::Pending);
        assert!(!fixture.silences.is_silenced(&db, START));
        assert!(fixture.silences.is_silenced(&db, START + 10 * MINUTE));
        assert!(
            !fixture.silences.is_silenced(&dev, START + 10 * MINUTE),
            "env!=dev"
        );
        assert!(
            !fixture
                .silences
                .is_silenced(&labels(&[("instance", "web-1")]), START + 20 * MINUTE)
        );
        assert_eq!(
            fixture.silences.silenced_by(&db, START + 20 * MINUTE),
            vec![id.clone()]
        );
        assert!(
            !fixture.silences.is_silenced(&db, START + 70 * MINUTE),
            "end is exclusive"
        );
        assert_eq!(silence.state_at(START + 70 * MINUTE), SilenceState::Expired);
    }

    #[test]
    fn a_start_in_the_past_becomes_now() {
        let fixture = fixture();
        let id = fixture
            .silences
            .create_or_update(request(
                vec![matcher("a", "b", false, true)],
                START - 60 * MINUTE,
                START + MINUTE,
            ))
            .unwrap();
        let silence = fixture.silences.get(&id).unwrap();
        assert_eq!(silence.starts_at, START);
        assert_eq!(silence.updated_at, START);
    }

    #[test]
    fn updates_keep_the_id_only_when_alertmanager_would() {
        let fixture = fixture();
        let matchers = vec![matcher("job", "node", false, true)];
        let id = fixture
            .silences
            .create_or_update(request(matchers.clone(), START, START + 60 * MINUTE))
            .unwrap();
        fixture.clock.advance(5 * MINUTE);

        // Active, same matchers and start, new end and comment: in place.
        let mut longer = request(matchers.clone(), START, START + 120 * MINUTE);
        longer.id = Some(id.clone());
        longer.comment = "longer".to_string();
        assert_eq!(fixture.silences.create_or_update(longer).unwrap(), id);
        let updated = fixture.silences.get(&id).unwrap();
        assert_eq!(
            (updated.ends_at, updated.comment.as_str()),
            (START + 120 * MINUTE, "longer")
        );
        assert_eq!(updated.updated_at, START + 5 * MINUTE);

        // Changed matchers: the old one expires now, a new id takes over.
        let mut changed = request(
            vec![matcher("job", "db", false, true)],
            START,
            START + 120 * MINUTE,
        );
        changed.id = Some(id.clone());
        let new_id = fixture.silences.create_or_update(changed).unwrap();
        assert_ne!(new_id, id);
        let old = fixture.silences.get(&id).unwrap();
        assert_eq!(old.ends_at, START + 5 * MINUTE);
        assert_eq!(old.state_at(START + 5 * MINUTE), SilenceState::Expired);
        let replacement = fixture.silences.get(&new_id).unwrap();
        assert_eq!(
            replacement.starts_at,
            START + 5 * MINUTE,
            "start moved to now"
        );

        // An expired silence is never updated in place.
        let mut revive = request(
            vec![matcher("job", "node", false, true)],
            START + 5 * MINUTE,
            START + 180 * MINUTE,
        );
        revive.id = Some(id.clone());
        let revived = fixture.silences.create_or_update(revive).unwrap();
        assert_ne!(revived, id);

        let mut unknown = request(matchers, START + 5 * MINUTE, START + 60 * MINUTE);
        unknown.id = Some("no-such-id".to_string());
        assert!(matches!(
            fixture.silences.create_or_update(unknown),
            Err(NotifyError::SilenceNotFound(_))
        ));
    }

    #[test]
    fn expiring_moves_the_end_and_pending_ones_collapse() {
        let fixture = fixture();
        let active = fixture
            .silences
            .create_or_update(request(
                vec![matcher("a", "1", false, true)],
                START,
                START + 60 * MINUTE,
            ))
            .unwrap();
        let pending = fixture
            .silences
            .create_or_update(request(
                vec![matcher("a", "2", false, true)],
                START + 30 * MINUTE,
                START + 60 * MINUTE,
            ))
            .unwrap();
        fixture.clock.advance(MINUTE);
        fixture.silences.expire(&active).unwrap();
        fixture.silences.expire(&pending).unwrap();
        let now = START + MINUTE;
        let active = fixture.silences.get(&active).unwrap();
        assert_eq!((active.starts_at, active.ends_at), (START, now));
        let pending_silence = fixture.silences.get(&pending).unwrap();
        assert_eq!(
            (pending_silence.starts_at, pending_silence.ends_at),
            (now, now)
        );
        assert!(!fixture.silences.is_silenced(&labels(&[("a", "1")]), now));
        assert!(matches!(
            fixture.silences.expire(&pending),
            Err(NotifyError::SilenceAlreadyExpired(_))
        ));
        assert!(matches!(
            fixture.silences.expire("missing"),
            Err(NotifyError::SilenceNotFound(_))
        ));
    }

    #[test]
    fn invalid_requests_are_refused_with_a_reason() {
        let fixture = fixture();
        let cases = [
            (
                request(vec![], START, START + MINUTE),
                "at least one matcher",
            ),
            (
                request(vec![matcher("a", ".*", true, true)], START, START + MINUTE),
                "must not match the empty string",
            ),
            (
                request(vec![matcher("a", "(", true, true)], START, START + MINUTE),
                "invalid label matcher",
            ),
            (
                request(vec![matcher("", "x", false, true)], START, START + MINUTE),
                "empty label name",
            ),
            (
                request(vec![matcher("a", "b", false, true)], START + MINUTE, START),
                "before end time",
            ),
            (
                request(
                    vec![matcher("a", "b", false, true)],
                    START - 2 * MINUTE,
                    START - MINUTE,
                ),
                "in the past",
            ),
        ];
        for (bad, fragment) in cases {
            match fixture.silences.create_or_update(bad) {
                Err(NotifyError::InvalidSilence(message)) => {
                    assert!(
                        message.contains(fragment),
                        "{message} should mention {fragment}"
                    )
                }
                other => panic!("expected InvalidSilence({fragment}), got {other:?}"),
            }
        }
        assert!(fixture.silences.is_empty());
    }

    #[test]
    fn silences_survive_reopening_and_expired_ones_are_dropped_after_retention() {
        let fixture = fixture();
        let kept = fixture
            .silences
            .create_or_update(request(
                vec![matcher("a", "1", false, true)],
                START,
                START + 60 * MINUTE,
            ))
            .unwrap();
        let old = fixture
            .silences
            .create_or_update(request(
                vec![matcher("a", "2", false, true)],
                START,
                START + MINUTE,
            ))
            .unwrap();
        let retention = EXPIRED_RETENTION.as_millis() as i64;
        fixture.clock.set(START + MINUTE + retention + 1);
        let reopened =
            Silences::open(fixture.store.clone(), Arc::new(fixture.clock.clone())).unwrap();
        assert!(reopened.get(&old).is_none(), "past retention");
        assert_eq!(reopened.get(&kept), fixture.silences.get(&kept));
        fixture.clock.set(START + 60 * MINUTE + retention + 1);
        assert_eq!(reopened.garbage_collect().unwrap(), 1);
        let again = Silences::open(fixture.store.clone(), Arc::new(fixture.clock.clone())).unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn listing_orders_and_filters_as_alertmanager() {
        let fixture = fixture();
        let make = |name: &str, value: &str, start: i64, end: i64| {
            fixture
                .silences
                .create_or_update(request(vec![matcher(name, value, false, true)], start, end))
                .unwrap()
        };
        let active_late = make("job", "a", START, START + 50 * MINUTE);
        let active_early = make("job", "b", START, START + 40 * MINUTE);
        let pending = make("team", "c", START + 10 * MINUTE, START + 60 * MINUTE);
        let expired = make("job", "d", START, START + MINUTE);
        fixture.clock.advance(2 * MINUTE);
        let ids: Vec<String> = fixture
            .silences
            .list(&[])
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(
            ids,
            [
                active_early.clone(),
                active_late.clone(),
                pending.clone(),
                expired.clone()
            ]
        );

        let filter = crate::config::matcher::parse_matchers("job=~\"a|d\"").unwrap();
        let ids: Vec<String> = fixture
            .silences
            .list(&filter)
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, [active_late, expired]);
        let without_job = crate::config::matcher::parse_matchers("job=\"\"").unwrap();
        let ids: Vec<String> = fixture
            .silences
            .list(&without_job)
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, [pending]);
    }

    #[test]
    fn stored_values_round_trip_and_garbage_never_panics() {
        let silence = Silence {
            id: "id".to_string(),
            matchers: vec![matcher("a", "b", true, false)],
            starts_at: 1,
            ends_at: 2,
            updated_at: 3,
            created_by: "me".to_string(),
            comment: "c".to_string(),
        };
        let bytes = encode_stored(&silence).unwrap();
        assert_eq!(decode_stored(&bytes).unwrap(), silence);
        for cut in 0..bytes.len() {
            assert!(
                decode_stored(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let mut other_version = bytes.clone();
        other_version[0] = 9;
        assert!(decode_stored(&other_version).is_err());
    }
}
