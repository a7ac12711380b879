//! The in-memory inverted index: label name → value → sorted series slots,
//! and the evaluation of label matchers over it with Prometheus semantics
//! (a matcher that accepts the empty string also selects series that lack
//! the label). Names and values are interned symbols, so one posting entry
//! costs 4 bytes and each distinct string is stored once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{MatchOp, Matcher};

/// Index of a series in the head (dense, assigned in persistent-id order).
pub type SeriesSlot = u32;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Interned strings: each distinct label name or value once.
#[derive(Default)]
pub struct Symbols {
    strings: Vec<Arc<str>>,
    lookup: FastMap<Arc<str>, u32>,
}

impl Symbols {
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(symbol) = self.lookup.get(text) {
            return *symbol;
        }
        let symbol = self.strings.len() as u32;
        let shared: Arc<str> = Arc::from(text);
        self.strings.push(shared.clone());
        self.lookup.insert(shared, symbol);
        symbol
    }

    pub fn find(&self, text: &str) -> Option<u32> {
        self.lookup.get(text).copied()
    }

    #[inline]
    pub fn get(&self, symbol: u32) -> &str {
        self.strings
            .get(symbol as usize)
            .map(|text| &**text)
            .unwrap_or("")
    }

    pub fn memory_bytes(&self) -> usize {
        self.strings
            .iter()
            .map(|text| text.len() + 16 + 16 + 8)
            .sum::<usize>()
            + self.lookup.capacity() * 24
    }
}

/// Postings lists: all sorted ascending, without duplicates.
#[derive(Default)]
pub struct Postings {
    by_name: FastMap<u32, FastMap<u32, Vec<SeriesSlot>>>,
    all: Vec<SeriesSlot>,
}

fn insert_sorted(list: &mut Vec<SeriesSlot>, slot: SeriesSlot) {
    // Slots are handed out in increasing order, so this is a push almost always.
    match list.last() {
        Some(last) if *last >= slot => {
            if let Err(position) = list.binary_search(&slot) {
                list.insert(position, slot);
            }
        }
        _ => list.push(slot),
    }
}

impl Postings {
    pub fn add(&mut self, slot: SeriesSlot, labels: &[(u32, u32)]) {
        for (name, value) in labels {
            let list = self
                .by_name
                .entry(*name)
                .or_default()
                .entry(*value)
                .or_default();
            insert_sorted(list, slot);
        }
        insert_sorted(&mut self.all, slot);
    }

    pub fn remove(&mut self, slot: SeriesSlot, labels: &[(u32, u32)]) {
        for (name, value) in labels {
            if let Some(values) = self.by_name.get_mut(name) {
                if let Some(list) = values.get_mut(value) {
                    if let Ok(position) = list.binary_search(&slot) {
                        list.remove(position);
                    }
                    if list.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.by_name.remove(name);
                }
            }
        }
        if let Ok(position) = self.all.binary_search(&slot) {
            self.all.remove(position);
        }
    }

    #[cfg(test)]
    pub fn all(&self) -> &[SeriesSlot] {
        &self.all
    }

    /// Every label name with the postings lists of its values.
    pub fn names(&self) -> impl Iterator<Item = (u32, impl Iterator<Item = &[SeriesSlot]>)> {
        self.by_name
            .iter()
            .map(|(name, values)| (*name, values.values().map(|list| list.as_slice())))
    }

    /// The values of one label name with their postings.
    pub fn values_of(&self, name: u32) -> impl Iterator<Item = (u32, &[SeriesSlot])> {
        self.by_name
            .get(&name)
            .into_iter()
            .flat_map(|values| values.iter().map(|(value, list)| (*value, list.as_slice())))
    }

    pub fn get(&self, name: u32, value: u32) -> &[SeriesSlot] {
        self.by_name
            .get(&name)
            .and_then(|values| values.get(&value))
            .map(|list| list.as_slice())
            .unwrap_or(&[])
    }

    pub fn memory_bytes(&self) -> usize {
        let lists: usize = self
            .by_name
            .values()
            .map(|values| {
                values.capacity() * 40
                    + values
                        .values()
                        .map(|list| list.capacity() * 4)
                        .sum::<usize>()
            })
            .sum();
        lists + self.all.capacity() * 4 + self.by_name.capacity() * 48
    }

    /// Series slots whose labels satisfy every matcher, sorted ascending.
    pub fn select(&self, symbols: &Symbols, matchers: &[Matcher]) -> Vec<SeriesSlot> {
        // Matchers that reject the empty string require the label to be
        // present: they narrow by intersection. The others can only remove
        // series (those whose value fails the matcher).
        let mut result: Option<Vec<SeriesSlot>> = None;
        let mut subtractive: Vec<&Matcher> = Vec::new();
        for matcher in matchers {
            if matcher.matches_empty() {
                subtractive.push(matcher);
                continue;
            }
            let selected = self.union_of_values(symbols, matcher, true);
            result = Some(match result {
                None => selected,
                Some(current) => intersect(&current, &selected),
            });
            if result.as_ref().is_some_and(|list| list.is_empty()) {
                return Vec::new();
            }
        }
        let mut result = result.unwrap_or_else(|| self.all.clone());
        for matcher in subtractive {
            if result.is_empty() {
                break;
            }
            let excluded = self.union_of_values(symbols, matcher, false);
            result = subtract(&result, &excluded);
        }
        result
    }

    /// Union of the postings of values of `matcher.name` for which the
    /// matcher's verdict equals `wanted`.
    fn union_of_values(
        &self,
        symbols: &Symbols,
        matcher: &Matcher,
        wanted: bool,
    ) -> Vec<SeriesSlot> {
        let Some(name) = symbols.find(&matcher.name) else {
            return Vec::new();
        };
        // Fast path: `=` needs exactly one list, `!=` with wanted=false too.
        let exact = matches!(
            (matcher.op, wanted),
            (MatchOp::Equal, true) | (MatchOp::NotEqual, false)
        );
        if exact {
            return match symbols.find(&matcher.value) {
                Some(value) => self.get(name, value).to_vec(),
                None => Vec::new(),
            };
        }
        let mut lists: Vec<&[SeriesSlot]> = self
            .values_of(name)
            .filter(|(value, _)| matcher.matches(symbols.get(*value)) == wanted)
            .map(|(_, list)| list)
            .collect();
        match lists.len() {
            0 => Vec::new(),
            1 => lists[0].to_vec(),
            _ => {
                lists.sort_by_key(|list| std::cmp::Reverse(list.len()));
                let mut merged: Vec<SeriesSlot> =
                    Vec::with_capacity(lists.iter().map(|list| list.len()).sum());
                for list in lists {
                    merged.extend_from_slice(list);
                }
                // One series has one value per name, so the lists are disjoint.
                merged.sort_unstable();
                merged
            }
        }
    }
}

pub fn intersect(left: &[SeriesSlot], right: &[SeriesSlot]) -> Vec<SeriesSlot> {
    let (small, large) = if left.len() <= right.len() {
        (left, right)
    } else {
        (right, left)
    };
    let mut out = Vec::with_capacity(small.len());
    let mut large_index = 0;
    for slot in small {
        while large_index < large.len() && large[large_index] < *slot {
            large_index += 1;
        }
        if large_index == large.len() {
            break;
        }
        if large[large_index] == *slot {
            out.push(*slot);
        }
    }
    out
}

pub fn subtract(left: &[SeriesSlot], right: &[SeriesSlot]) -> Vec<SeriesSlot> {
    let mut out = Vec::with_capacity(left.len());
    let mut right_index = 0;
    for slot in left {
        while right_index < right.len() && right[right_index] < *slot {
            right_index += 1;
        }
        if right_index < right.len() && right[right_index] == *slot {
            continue;
        }
        out.push(*slot);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(series: &[&[(&str, &str)]]) -> (Symbols, Postings) {
        let mut symbols = Symbols::default();
        let mut postings = Postings::default();
        for (slot, labels) in series.iter().enumerate() {
            let interned: Vec<(u32, u32)> = labels
                .iter()
                .map(|(n, v)| (symbols.intern(n), symbols.intern(v)))
                .collect();
            postings.add(slot as u32, &interned);
        }
        (symbols, postings)
    }

    fn select(series: &[&[(&str, &str)]], matchers: &[Matcher]) -> Vec<u32> {
        let (symbols, postings) = index(series);
        postings.select(&symbols, matchers)
    }

    const SERIES: &[&[(&str, &str)]] = &[
        &[("__name__", "up"), ("job", "node")],
        &[("__name__", "up"), ("job", "api"), ("zone", "a")],
        &[("__name__", "up")],
        &[("__name__", "down"), ("job", "node")],
    ];

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).unwrap()
    }

    #[test]
    fn equal_and_not_equal() {
        assert_eq!(select(SERIES, &[Matcher::equal("job", "node")]), vec![0, 3]);
        assert_eq!(
            select(
                SERIES,
                &[
                    Matcher::equal("__name__", "up"),
                    m(MatchOp::NotEqual, "job", "node")
                ]
            ),
            vec![1, 2]
        );
    }

    #[test]
    fn matchers_that_match_empty_select_series_without_the_label() {
        assert_eq!(
            select(
                SERIES,
                &[Matcher::equal("__name__", "up"), Matcher::equal("job", "")]
            ),
            vec![2]
        );
        assert_eq!(
            select(SERIES, &[m(MatchOp::Regex, "zone", "a|")]),
            vec![0, 1, 2, 3]
        );
        assert_eq!(
            select(SERIES, &[m(MatchOp::Regex, "job", "n.*|")]),
            vec![0, 2, 3]
        );
        assert_eq!(
            select(SERIES, &[m(MatchOp::NotRegex, "job", "node")]),
            vec![1, 2]
        );
    }

    #[test]
    fn matchers_that_reject_empty_require_the_label() {
        assert_eq!(
            select(SERIES, &[m(MatchOp::NotEqual, "job", "")]),
            vec![0, 1, 3]
        );
        assert_eq!(
            select(SERIES, &[m(MatchOp::Regex, "job", ".+")]),
            vec![0, 1, 3]
        );
        assert_eq!(
            select(SERIES, &[m(MatchOp::NotRegex, "job", "|node")]),
            vec![1]
        );
        assert_eq!(
            select(SERIES, &[Matcher::equal("nope", "x")]),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn no_matchers_selects_everything() {
        assert_eq!(select(SERIES, &[]), vec![0, 1, 2, 3]);
    }

    #[test]
    fn removal_keeps_lists_sorted() {
        let (mut symbols, mut postings) = index(SERIES);
        let labels = [
            (symbols.intern("__name__"), symbols.intern("up")),
            (symbols.intern("job"), symbols.intern("node")),
        ];
        postings.remove(0, &labels);
        assert_eq!(
            postings.select(&symbols, &[Matcher::equal("job", "node")]),
            vec![3]
        );
        assert_eq!(postings.all(), &[1, 2, 3]);
    }

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 7, 9]), vec![3, 7]);
        assert_eq!(subtract(&[1, 3, 5, 7], &[3, 4, 7, 9]), vec![1, 5]);
    }
}
