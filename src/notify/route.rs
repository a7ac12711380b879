//! The routing tree: which route nodes (receiver + grouping + timers) an
//! alert goes to. Built once per configuration from `config::notifications`
//! with Alertmanager's inheritance (receiver, `group_by` and the three
//! timers flow down; time intervals do not) and matched as Alertmanager's
//! `dispatch/route.go` does: depth-first, left to right; a matching child
//! stops the search among its siblings unless it has `continue: true`; a
//! node none of whose children match is itself the match.
//!
//! Each node carries a stable `id` in Alertmanager's route-ID form
//! (`{}/{severity="critical"}/0`: the matcher sets from the root down, then
//! the position among its siblings), so the dispatcher's groups and the
//! outbox keep their identity across restarts and unrelated config edits.

use std::time::Duration;

use crate::config::notifications::RouteConfig;
pub use crate::config::notifications::{GroupBy, TimeIntervals};
use crate::model::{Label, Labels, MatchOp, Matcher, Timestamp, matches_all};

/// Alertmanager's defaults for the root route; children inherit.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// The resolved tree. Nodes live in one vector in depth-first order; the
/// root is the first.
#[derive(Debug, Clone)]
pub struct RouteTree {
    nodes: Vec<RouteNode>,
}

/// One route with everything inherited already applied.
#[derive(Debug, Clone)]
pub struct RouteNode {
    /// Alertmanager's route ID: stable path of matcher sets and positions.
    pub id: String,
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
    /// Sorted as Alertmanager sorts them (name, value, operator).
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    /// Indexes of the children in the tree's node vector, in config order.
    children: Vec<usize>,
}

impl RouteTree {
    pub fn new(config: &RouteConfig) -> RouteTree {
        let mut nodes = Vec::new();
        let root_defaults = Inherited {
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
        };
        add_node(&mut nodes, config, &root_defaults, None);
        RouteTree { nodes }
    }

    pub fn root(&self) -> &RouteNode {
        &self.nodes[0]
    }

    /// Every node, depth-first from the root.
    pub fn nodes(&self) -> &[RouteNode] {
        &self.nodes
    }

    /// The routes an alert goes to (continue honoured), depth-first as
    /// Alertmanager. Never empty: the root matches everything.
    pub fn matching(&self, labels: &Labels) -> Vec<&RouteNode> {
        let mut found = Vec::new();
        self.match_node(0, labels, &mut found);
        if found.is_empty() {
            // The root has no matchers (validated), so this only happens
            // for a tree built from an unvalidated config.
            found.push(0);
        }
        found.into_iter().map(|index| &self.nodes[index]).collect()
    }

    /// Appends the matches below (or at) `index`; returns whether the node matched.
    fn match_node(&self, index: usize, labels: &Labels, found: &mut Vec<usize>) -> bool {
        let node = &self.nodes[index];
        if !matches_all(&node.matchers, labels) {
            return false;
        }
        let before = found.len();
        for &child in &node.children {
            if self.match_node(child, labels, found) && !self.nodes[child].continue_matching {
                break;
            }
        }
        if found.len() == before {
            found.push(index);
        }
        true
    }
}

struct Inherited {
    receiver: String,
    group_by: GroupBy,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

/// Adds `config` and its subtree; returns the new node's index.
fn add_node(
    nodes: &mut Vec<RouteNode>,
    config: &RouteConfig,
    parent: &Inherited,
    parent_key_and_position: Option<(&str, usize)>,
) -> usize {
    let inherited = Inherited {
        receiver: config
            .receiver
            .clone()
            .unwrap_or_else(|| parent.receiver.clone()),
        group_by: config
            .group_by
            .clone()
            .unwrap_or_else(|| parent.group_by.clone()),
        group_wait: config.group_wait.unwrap_or(parent.group_wait),
        group_interval: config.group_interval.unwrap_or(parent.group_interval),
        repeat_interval: config.repeat_interval.unwrap_or(parent.repeat_interval),
    };
    let mut matchers = config.matchers.clone();
    matchers.sort_by(|left, right| {
        (left.name.as_str(), left.value.as_str(), op_rank(left.op)).cmp(&(
            right.name.as_str(),
            right.value.as_str(),
            op_rank(right.op),
        ))
    });
    let key = match parent_key_and_position {
        Some((parent_key, _)) => format!("{parent_key}/{}", matcher_set_text(&matchers)),
        None => matcher_set_text(&matchers),
    };
    let id = match parent_key_and_position {
        Some((_, position)) => format!("{key}/{position}"),
        None => key.clone(),
    };
    let index = nodes.len();
    nodes.push(RouteNode {
        id,
        receiver: inherited.receiver.clone(),
        group_by: inherited.group_by.clone(),
        group_wait: inherited.group_wait,
        group_interval: inherited.group_interval,
        repeat_interval: inherited.repeat_interval,
        mute_time_intervals: config.mute_time_intervals.clone(),
        active_time_intervals: config.active_time_intervals.clone(),
        matchers,
        continue_matching: config.continue_matching,
        children: Vec::new(),
    });
    let mut children = Vec::with_capacity(config.routes.len());
    for (position, child) in config.routes.iter().enumerate() {
        children.push(add_node(nodes, child, &inherited, Some((&key, position))));
    }
    nodes[index].children = children;
    index
}

/// Alertmanager's operator order (`=`, `!=`, `=~`, `!~`) for sorting.
fn op_rank(op: MatchOp) -> u8 {
    match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::Regex => 2,
        MatchOp::NotRegex => 3,
    }
}

/// `{a="b",c=~"d"}`; names that are not classic identifiers are quoted.
fn matcher_set_text(matchers: &[Matcher]) -> String {
    let mut text = String::from("{");
    for (position, matcher) in matchers.iter().enumerate() {
        if position > 0 {
            text.push(',');
        }
        if crate::model::is_legacy_label_name(&matcher.name) {
            text.push_str(&matcher.name);
        } else {
            text.push_str(&format!("{:?}", matcher.name));
        }
        text.push_str(&format!("{}{:?}", matcher.op, matcher.value));
    }
    text.push('}');
    text
}

impl RouteNode {
    /// The group key labels: the alert's labels named in `group_by` (all of
    /// them for `...`). A label the alert lacks is left out, as Alertmanager does.
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => Labels::new(
                labels
                    .iter()
                    .filter(|label| names.contains(&label.name))
                    .cloned()
                    .collect::<Vec<Label>>(),
            ),
        }
    }

    /// False when muted by a mute interval or outside all its active intervals at `ts`.
    pub fn is_active_at(&self, ts: Timestamp, intervals: &TimeIntervals) -> bool {
        let in_interval = |name: &String| intervals.contains(name, ts).unwrap_or(false);
        if self.mute_time_intervals.iter().any(in_interval) {
            return false;
        }
        self.active_time_intervals.is_empty() || self.active_time_intervals.iter().any(in_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse_config;
    use crate::config::notifications::NotificationsConfig;

    fn notifications(yaml: &str) -> NotificationsConfig {
        match parse_config(yaml) {
            Ok(config) => config.notifications.expect("a notifications section"),
            Err(error) => panic!("config does not parse: {error}"),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    const TREE: &str = r#"
notifications:
  route:
    receiver: default
    group_by: [alertname]
    routes:
    - matchers: ['severity="critical"']
      receiver: pager
      group_wait: 10s
      routes:
      - matchers: [team=db]
        receiver: db-pager
        group_by: ['...']
    - match: {team: web}
      receiver: web
      continue: true
    - match_re: {team: "web|api"}
      receiver: api
      repeat_interval: 1h
    - matchers: ['env="staging"', 'team!~"ops.*"']
      receiver: staging
  receivers:
  - name: default
  - name: pager
  - name: db-pager
  - name: web
  - name: api
  - name: staging
"#;

    /// Alertmanager's documented matching: depth-first, first matching
    /// child wins unless it has `continue`, a node without matching
    /// children is the match itself.
    #[test]
    fn matching_follows_alertmanager_depth_first_with_continue() {
        let tree = RouteTree::new(&notifications(TREE).route);
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: [Case; 8] = [
            (&[], &["default"]),
            (&[("severity", "critical")], &["pager"]),
            (&[("severity", "critical"), ("team", "db")], &["db-pager"]),
            // The critical route has no `continue`: later siblings are not tried.
            (&[("severity", "critical"), ("team", "web")], &["pager"]),
            (&[("team", "web")], &["web", "api"]),
            (&[("team", "api")], &["api"]),
            // `api` matched without `continue`, so `staging` is not reached.
            (&[("team", "web"), ("env", "staging")], &["web", "api"]),
            (&[("env", "staging"), ("team", "dev")], &["staging"]),
        ];
        for (alert, expected) in cases {
            let receivers: Vec<&str> = tree
                .matching(&labels(alert))
                .iter()
                .map(|node| node.receiver.as_str())
                .collect();
            assert_eq!(receivers, expected, "alert {alert:?}");
        }
        let excluded = tree.matching(&labels(&[("env", "staging"), ("team", "ops-1")]));
        assert_eq!(excluded.len(), 1);
        assert_eq!(excluded[0].receiver, "default", "team!~ops.* excludes");
    }

    #[test]
    fn settings_are_inherited_down_the_tree_with_alertmanager_defaults() {
        let tree = RouteTree::new(&notifications(TREE).route);
        let root = tree.root();
        assert_eq!(root.group_wait, Duration::from_secs(30));
        assert_eq!(root.group_interval, Duration::from_secs(300));
        assert_eq!(root.repeat_interval, Duration::from_secs(4 * 3600));
        assert_eq!(
            root.group_by,
            GroupBy::Labels(vec!["alertname".to_string()])
        );

        let db = &tree.matching(&labels(&[("severity", "critical"), ("team", "db")]))[0];
        assert_eq!(db.group_wait, Duration::from_secs(10), "from its parent");
        assert_eq!(db.group_interval, Duration::from_secs(300), "from the root");
        assert_eq!(db.group_by, GroupBy::All);

        let pager = &tree.matching(&labels(&[("severity", "critical")]))[0];
        assert_eq!(
            pager.group_by,
            GroupBy::Labels(vec!["alertname".to_string()])
        );

        let api = &tree.matching(&labels(&[("team", "api")]))[0];
        assert_eq!(api.repeat_interval, Duration::from_secs(3600));
        assert_eq!(api.group_wait, Duration::from_secs(30));
    }

    /// IDs in Alertmanager's form: parent keys (sorted matcher sets) joined
    /// by `/`, then the position among siblings.
    #[test]
    fn route_ids_have_alertmanager_form() {
        let tree = RouteTree::new(&notifications(TREE).route);
        let ids: Vec<&str> = tree.nodes().iter().map(|node| node.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "{}",
                "{}/{severity=\"critical\"}/0",
                "{}/{severity=\"critical\"}/{team=\"db\"}/0",
                "{}/{team=\"web\"}/1",
                "{}/{team=~\"web|api\"}/2",
                "{}/{env=\"staging\",team!~\"ops.*\"}/3",
            ]
        );
    }

    #[test]
    fn group_labels_pick_the_group_by_labels_present() {
        let tree = RouteTree::new(&notifications(TREE).route);
        let alert = labels(&[("alertname", "Down"), ("instance", "a:9100")]);
        let root = tree.root();
        assert_eq!(root.group_labels(&alert), labels(&[("alertname", "Down")]));
        assert_eq!(
            root.group_labels(&labels(&[("instance", "a")])),
            Labels::empty(),
            "a missing group_by label is left out"
        );
        let all = tree.matching(&labels(&[("severity", "critical"), ("team", "db")]))[0];
        let critical = labels(&[("severity", "critical"), ("team", "db"), ("x", "1")]);
        assert_eq!(all.group_labels(&critical), critical);
    }

    #[test]
    fn mute_and_active_intervals_gate_a_route() {
        let config = notifications(
            r#"
notifications:
  route:
    receiver: default
    routes:
    - matchers: [team=db]
      receiver: db
      mute_time_intervals: [weekend]
    - matchers: [team=web]
      receiver: web
      active_time_intervals: [office]
  receivers: [{name: default}, {name: db}, {name: web}]
  time_intervals:
  - name: weekend
    time_intervals:
    - weekdays: ['saturday', 'sunday']
  - name: office
    time_intervals:
    - weekdays: ['monday:friday']
      times: [{start_time: '09:00', end_time: '17:00'}]
"#,
        );
        let tree = RouteTree::new(&config.route);
        let intervals = config.time_interval_table();
        let at = |year, month, day, hour: i64| {
            crate::model::days_from_civil(year, month, day) * 86_400_000 + hour * 3_600_000
        };
        // 2026-11-21 is a Saturday, 2026-11-23 a Monday.
        let saturday_noon = at(2026, 11, 21, 12);
        let monday_noon = at(2026, 11, 23, 12);
        let monday_night = at(2026, 11, 23, 22);
        let db = tree.matching(&labels(&[("team", "db")]))[0];
        assert!(
            !db.is_active_at(saturday_noon, &intervals),
            "muted on weekends"
        );
        assert!(db.is_active_at(monday_noon, &intervals));
        let web = tree.matching(&labels(&[("team", "web")]))[0];
        assert!(web.is_active_at(monday_noon, &intervals));
        assert!(
            !web.is_active_at(monday_night, &intervals),
            "outside office hours"
        );
        assert!(!web.is_active_at(saturday_noon, &intervals));
        assert!(tree.root().is_active_at(saturday_noon, &intervals));
    }
}
