//! Alertmanager's label matcher syntax, as `alertmanager.yml` writes it in
//! `matchers:` lists and the `/api/v2` `filter=` parameter takes it:
//! `name="value"`, `name=~"regex"`, `name!="value"`, `name!~"regex"`,
//! several separated by commas, optionally inside `{...}`. Values may be
//! unquoted (`severity=critical`); quoted values take `\"`, `\\` and `\n`
//! escapes; names are classic identifiers or double-quoted UTF-8. Regexes
//! are anchored, as everywhere in Prometheus. Both the notification routes
//! and the SLA policies match alerts with these.

use crate::model::{MatchOp, Matcher};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("bad matcher {text:?}: {reason}")]
    Syntax { text: String, reason: String },
}

/// Parses one or more comma-separated matchers.
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, MatcherError> {
    let fail = |reason: &str| MatcherError::Syntax {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let mut rest = text.trim();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner
            .strip_suffix('}')
            .ok_or_else(|| fail("missing closing '}'"))?
            .trim();
    } else if rest.ends_with('}') {
        return Err(fail("missing opening '{'"));
    }
    let mut matchers = Vec::new();
    while !rest.is_empty() {
        let (name, after_name) = parse_name(rest).map_err(|reason| fail(&reason))?;
        let after_name = after_name.trim_start();
        let (op, after_op) = parse_operator(after_name).map_err(|reason| fail(&reason))?;
        let (value, after_value) =
            parse_value(after_op.trim_start()).map_err(|reason| fail(&reason))?;
        let matcher = Matcher::new(op, name, value).map_err(|error| fail(&error.to_string()))?;
        matchers.push(matcher);
        rest = after_value.trim_start();
        if let Some(next) = rest.strip_prefix(',') {
            rest = next.trim_start();
        } else if !rest.is_empty() {
            return Err(fail(&format!("expected ',' before {rest:?}")));
        }
    }
    if matchers.is_empty() {
        return Err(fail("no matchers"));
    }
    Ok(matchers)
}

/// Parses a list of matcher strings (each may hold several), as a YAML
/// `matchers:` list.
pub fn parse_matcher_list(texts: &[String]) -> Result<Vec<Matcher>, MatcherError> {
    let mut matchers = Vec::new();
    for text in texts {
        matchers.extend(parse_matchers(text)?);
    }
    Ok(matchers)
}

fn parse_name(text: &str) -> Result<(String, &str), String> {
    if text.starts_with('"') {
        let (name, rest) = parse_quoted(text)?;
        if name.is_empty() {
            return Err("empty label name".to_string());
        }
        return Ok((name, rest));
    }
    let end = text
        .char_indices()
        .find(|&(index, character)| {
            !(character.is_ascii_alphabetic()
                || character == '_'
                || (index > 0 && character.is_ascii_digit()))
        })
        .map_or(text.len(), |(index, _)| index);
    if end == 0 {
        return Err(format!("expected a label name at {text:?}"));
    }
    Ok((text[..end].to_string(), &text[end..]))
}

fn parse_operator(text: &str) -> Result<(MatchOp, &str), String> {
    for (symbol, op) in [
        ("=~", MatchOp::Regex),
        ("!~", MatchOp::NotRegex),
        ("!=", MatchOp::NotEqual),
        ("=", MatchOp::Equal),
    ] {
        if let Some(rest) = text.strip_prefix(symbol) {
            return Ok((op, rest));
        }
    }
    Err(format!("expected one of = != =~ !~ at {text:?}"))
}

fn parse_value(text: &str) -> Result<(String, &str), String> {
    if text.starts_with('"') {
        return parse_quoted(text);
    }
    // Unquoted: up to the next comma (or the end); a quote inside is an error
    // because it is almost always a typo for a quoted value.
    let end = text.find(',').unwrap_or(text.len());
    let value = text[..end].trim_end();
    if value.contains('"') {
        return Err(format!("unbalanced quotes in value {value:?}"));
    }
    Ok((value.to_string(), &text[end..]))
}

/// A double-quoted string with `\"`, `\\`, `\n` and `\t` escapes.
fn parse_quoted(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut characters = text.char_indices().skip(1);
    while let Some((index, character)) = characters.next() {
        match character {
            '"' => return Ok((value, &text[index + 1..])),
            '\\' => match characters.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, other)) => return Err(format!("unknown escape \\{other}")),
                None => break,
            },
            other => value.push(other),
        }
    }
    Err("unterminated quoted string".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn parses_each_operator_quoted_and_unquoted() {
        let cases = [
            ("severity=critical", MatchOp::Equal, "severity", "critical"),
            (
                "severity=\"critical\"",
                MatchOp::Equal,
                "severity",
                "critical",
            ),
            ("job!=\"node\"", MatchOp::NotEqual, "job", "node"),
            ("instance=~\"db-.*\"", MatchOp::Regex, "instance", "db-.*"),
            ("instance !~ web.+", MatchOp::NotRegex, "instance", "web.+"),
            (
                "\"service.name\"=\"api\"",
                MatchOp::Equal,
                "service.name",
                "api",
            ),
            (
                "msg=\"a \\\"quoted\\\", value\"",
                MatchOp::Equal,
                "msg",
                "a \"quoted\", value",
            ),
            ("empty=\"\"", MatchOp::Equal, "empty", ""),
        ];
        for (text, op, name, value) in cases {
            let parsed = parse_matchers(text).unwrap();
            assert_eq!(parsed.len(), 1, "{text}");
            assert_eq!(
                (
                    parsed[0].op,
                    parsed[0].name.as_str(),
                    parsed[0].value.as_str()
                ),
                (op, name, value),
                "{text}"
            );
        }
    }

    #[test]
    fn several_matchers_in_braces_and_lists() {
        let parsed = parse_matchers("{layer=\"database\", severity=~\"critical|page\"}").unwrap();
        assert_eq!(parsed.len(), 2);
        let alert = labels(&[("layer", "database"), ("severity", "page")]);
        assert!(crate::model::matches_all(&parsed, &alert));
        let other = labels(&[("layer", "database"), ("severity", "pagenow")]);
        assert!(
            !crate::model::matches_all(&parsed, &other),
            "regex must be anchored"
        );
        let listed = parse_matcher_list(&["a=1,b=2".to_string(), "c!=3".to_string()]).unwrap();
        assert_eq!(listed.len(), 3);
    }

    #[test]
    fn rejects_malformed_matchers_with_reason() {
        for (text, fragment) in [
            ("", "no matchers"),
            ("severity", "expected one of"),
            ("=x", "expected a label name"),
            ("a=\"open", "unterminated"),
            ("{a=b", "closing"),
            ("a=b}", "opening"),
            ("a=~\"(\"", "regex"),
            ("a=\"x\" b=\"y\"", "expected ','"),
            ("a=\"\\q\"", "unknown escape"),
        ] {
            let error = parse_matchers(text).unwrap_err().to_string();
            assert!(error.to_lowercase().contains(fragment), "{text:?}: {error}");
        }
    }
}
