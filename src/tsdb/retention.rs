//! Retention planning: a pure function from the partition list and the
//! limits to what to delete. The commit thread applies the plan in one
//! write transaction. Time retention is measured from the newest sample in
//! the store (as Prometheus does); size retention drops the oldest
//! partitions until the stored chunks fit.
//!
//! Deletion is per partition (a key-range delete), but the plan also moves
//! the *floor*: the oldest time a reader may see. Queries hide everything
//! below it, so retention is exact from the reader's point of view.

use std::time::Duration;

use crate::config::Retention;
use crate::model::Timestamp;
use crate::tsdb::encoding::PartitionSummary;

/// What one partition holds, as the planner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub start: Timestamp,
    pub summary: PartitionSummary,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Partition starts to delete, oldest first.
    pub delete_partitions: Vec<Timestamp>,
    /// The new floor: samples older than this are invisible.
    pub floor: Timestamp,
}

/// What an applied retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub partitions_deleted: u64,
    pub chunks_deleted: u64,
    pub bytes_deleted: u64,
    /// Series with no sample left above the floor, removed with their labels.
    pub series_deleted: u64,
    /// Samples older than this are no longer visible (`None`: no limit yet).
    pub floor: Option<Timestamp>,
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Plans a retention pass. `partitions` may be in any order; `newest_t` is
/// the newest sample in the store; `current_floor` the floor already in
/// force (the plan never lowers it).
pub fn plan_retention(
    partitions: &[PartitionInfo],
    newest_t: Option<Timestamp>,
    retention: &Retention,
    current_floor: Timestamp,
) -> RetentionPlan {
    let mut sorted: Vec<PartitionInfo> = partitions.to_vec();
    sorted.sort_by_key(|partition| partition.start);
    let mut floor = current_floor;
    if let (Some(time), Some(newest_t)) = (retention.time, newest_t) {
        floor = floor.max(newest_t.saturating_sub(duration_ms(time)));
    }
    // Every partition whose newest sample is below the floor goes.
    let mut delete_partitions: Vec<Timestamp> = Vec::new();
    let mut kept: Vec<PartitionInfo> = Vec::new();
    for partition in sorted {
        if partition.summary.maxt < floor {
            delete_partitions.push(partition.start);
        } else {
            kept.push(partition);
        }
    }
    if let Some(limit) = retention.size_bytes {
        let mut total: u64 = kept.iter().map(|partition| partition.summary.bytes).sum();
        for partition in &kept {
            if total <= limit {
                break;
            }
            total = total.saturating_sub(partition.summary.bytes);
            delete_partitions.push(partition.start);
            // Samples a deleted partition held must not reappear from the
            // head or the log: hide everything up to its newest sample.
            floor = floor.max(partition.summary.maxt.saturating_add(1));
        }
    }
    RetentionPlan {
        delete_partitions,
        floor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::encoding::PARTITION_MS;

    fn partition(index: i64, bytes: u64) -> PartitionInfo {
        PartitionInfo {
            start: index * PARTITION_MS,
            summary: PartitionSummary {
                bytes,
                chunks: 1,
                mint: index * PARTITION_MS + 10,
                maxt: index * PARTITION_MS + PARTITION_MS - 10,
            },
        }
    }

    #[test]
    fn time_retention_deletes_partitions_entirely_older_than_newest_minus_time() {
        let partitions = [partition(2, 1), partition(0, 1), partition(1, 1)];
        let newest = 3 * PARTITION_MS - 10;
        let retention = Retention {
            time: Some(Duration::from_millis(
                (PARTITION_MS + PARTITION_MS / 2) as u64,
            )),
            size_bytes: None,
        };
        let plan = plan_retention(&partitions, Some(newest), &retention, Timestamp::MIN);
        // Floor falls inside partition 1, so only partition 0 is deleted.
        assert_eq!(plan.delete_partitions, vec![0]);
        assert_eq!(plan.floor, newest - PARTITION_MS - PARTITION_MS / 2);
    }

    #[test]
    fn no_limits_no_deletion_and_floor_never_moves_back() {
        let partitions = [partition(0, 100)];
        let plan = plan_retention(&partitions, Some(5), &Retention::default(), 7);
        assert_eq!(
            plan,
            RetentionPlan {
                delete_partitions: vec![],
                floor: 7
            }
        );
        assert_eq!(
            plan_retention(&[], None, &Retention::default(), Timestamp::MIN).floor,
            Timestamp::MIN
        );
    }

    #[test]
    fn size_retention_deletes_oldest_until_under_the_limit_and_raises_the_floor() {
        let partitions = [partition(0, 100), partition(1, 100), partition(2, 100)];
        let retention = Retention {
            time: None,
            size_bytes: Some(150),
        };
        let plan = plan_retention(
            &partitions,
            Some(3 * PARTITION_MS),
            &retention,
            Timestamp::MIN,
        );
        assert_eq!(plan.delete_partitions, vec![0, PARTITION_MS]);
        assert_eq!(plan.floor, 2 * PARTITION_MS - 10 + 1);
    }

    #[test]
    fn size_retention_after_time_retention_counts_only_kept_partitions() {
        let partitions = [partition(0, 1000), partition(1, 100), partition(2, 100)];
        let retention = Retention {
            time: Some(Duration::from_millis(PARTITION_MS as u64)),
            size_bytes: Some(200),
        };
        let plan = plan_retention(
            &partitions,
            Some(3 * PARTITION_MS - 10),
            &retention,
            Timestamp::MIN,
        );
        assert_eq!(plan.delete_partitions, vec![0]);
    }

    #[test]
    fn size_limit_zero_deletes_everything() {
        let partitions = [partition(0, 1), partition(1, 1)];
        let retention = Retention {
            time: None,
            size_bytes: Some(0),
        };
        let plan = plan_retention(
            &partitions,
            Some(PARTITION_MS * 2),
            &retention,
            Timestamp::MIN,
        );
        assert_eq!(plan.delete_partitions, vec![0, PARTITION_MS]);
        assert_eq!(plan.floor, 2 * PARTITION_MS - 10 + 1);
    }
}
