//! Recording rules: the query result renamed to the rule's `record` name,
//! with the rule's labels set (an empty value removes a label), written back
//! as ordinary series. Two results that end up with one label set are an
//! error, as are more series than the group's `limit`.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Labels;

use super::RuleEvaluationError;

#[derive(Clone, Debug)]
pub struct RecordingRule {
    pub name: String,
    pub expr: String,
    /// Rule labels with the group's labels merged in.
    pub labels: BTreeMap<String, String>,
}

impl RecordingRule {
    /// The series to write for one query result.
    pub fn evaluate(
        &self,
        result: Vec<(Labels, f64)>,
        limit: usize,
    ) -> Result<Vec<(Labels, f64)>, RuleEvaluationError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(result.len());
        for (labels, value) in result {
            let mut renamed = labels.with("__name__", &self.name);
            for (name, value) in &self.labels {
                renamed = renamed.with(name, value);
            }
            if !seen.insert(renamed.clone()) {
                return Err(RuleEvaluationError::Result(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .to_string(),
                ));
            }
            out.push((renamed, value));
        }
        if limit > 0 && out.len() > limit {
            return Err(RuleEvaluationError::Limit(format!(
                "exceeded limit {limit} with {} series",
                out.len()
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_and_relabels() {
        let rule = RecordingRule {
            name: "job:up:sum".to_string(),
            expr: "sum by (job) (up)".to_string(),
            labels: [
                ("source".to_string(), "rule".to_string()),
                ("drop".to_string(), String::new()),
            ]
            .into(),
        };
        let out = rule
            .evaluate(
                vec![(Labels::from_pairs([("job", "node"), ("drop", "x")]), 3.0)],
                0,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![(
                Labels::from_pairs([
                    ("__name__", "job:up:sum"),
                    ("job", "node"),
                    ("source", "rule")
                ]),
                3.0
            )]
        );
    }

    #[test]
    fn duplicate_label_sets_and_limit_fail() {
        let rule = RecordingRule {
            name: "r".to_string(),
            expr: "x".to_string(),
            labels: [("instance".to_string(), String::new())].into(),
        };
        let two = vec![
            (Labels::from_pairs([("instance", "a")]), 1.0),
            (Labels::from_pairs([("instance", "b")]), 2.0),
        ];
        assert!(matches!(
            rule.evaluate(two, 0),
            Err(RuleEvaluationError::Result(_))
        ));
        let rule = RecordingRule {
            labels: BTreeMap::new(),
            ..rule
        };
        let two = vec![
            (Labels::from_pairs([("instance", "a")]), 1.0),
            (Labels::from_pairs([("instance", "b")]), 2.0),
        ];
        assert!(matches!(
            rule.evaluate(two, 1),
            Err(RuleEvaluationError::Limit(_))
        ));
    }
}
