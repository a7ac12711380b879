//! Rewrites the parts of a query that the `promql-parser` crate (0.11) does
//! not parse, before it is parsed:
//!
//! - duration expressions inside `[...]` and `[...:...]` (`[5m+1m]`,
//!   `[step()*2]`, `[1800]`) and after `offset` (`offset (2*3s)`,
//!   `offset -step()`, `offset min_of(step(), 1s)`) are evaluated and
//!   replaced by a millisecond literal; `step()` and `range()` are the query's
//!   step and `end - start` (both 0 for instant queries);
//! - the `anchored` and `smoothed` selector modifiers are moved into a
//!   reserved label matcher (`__guardia_modifier__`) on their selector, so
//!   that the parsed AST still carries them; the evaluator removes the
//!   matcher before selecting.

use super::QueryError;

/// Name of the reserved matcher that carries `anchored`/`smoothed`.
pub(crate) const MODIFIER_LABEL: &str = "__guardia_modifier__";

/// A query text ready for the parser.
#[derive(Clone, Debug, Default)]
pub(crate) struct PreparedQuery {
    pub text: String,
}

pub(crate) fn prepare(
    text: &str,
    step_ms: i64,
    range_ms: i64,
) -> Result<PreparedQuery, QueryError> {
    let context = Context { step_ms, range_ms };
    let with_durations = rewrite_durations(text, &context)?;
    let with_modifiers = rewrite_modifiers(&with_durations);
    let with_info_selectors = rewrite_info_selectors(&with_modifiers);
    Ok(PreparedQuery {
        text: with_info_selectors,
    })
}

struct Context {
    step_ms: i64,
    range_ms: i64,
}

fn parse_error(message: impl Into<String>) -> QueryError {
    QueryError::Parse {
        message: format!("parse error: {}", message.into()),
    }
}

/// Byte index just after a quoted string starting at `start`.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut index = start + 1;
    while index < bytes.len() {
        if bytes[index] == b'\\' && quote != b'`' {
            index += 2;
            continue;
        }
        if bytes[index] == quote {
            return index + 1;
        }
        index += 1;
    }
    bytes.len()
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':'
}

fn format_duration_ms(milliseconds: i64) -> String {
    if milliseconds < 0 {
        format!("-{}ms", -milliseconds)
    } else {
        format!("{milliseconds}ms")
    }
}

/// True for text the parser reads as a duration already.
fn is_plain_duration(text: &str) -> bool {
    let text = text.trim();
    if text.is_empty() {
        return false;
    }
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let digits_start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        if digits_start == index {
            return false;
        }
        let unit_start = index;
        while index < bytes.len() && bytes[index].is_ascii_alphabetic() {
            index += 1;
        }
        if !matches!(
            &text[unit_start..index],
            "ms" | "s" | "m" | "h" | "d" | "w" | "y"
        ) {
            return false;
        }
    }
    true
}

fn rewrite_durations(text: &str, context: &Context) -> Result<String, QueryError> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if matches!(byte, b'"' | b'\'' | b'`') {
            let end = skip_string(bytes, index);
            out.push_str(&text[index..end]);
            index = end;
            continue;
        }
        if byte == b'[' {
            let Some(close) = find_closing(bytes, index, b'[', b']') else {
                out.push_str(&text[index..]);
                break;
            };
            let inner = &text[index + 1..close];
            out.push('[');
            match split_top_level_colon(inner) {
                Some((range, step)) => {
                    out.push_str(&rewrite_one_duration(range, context, true)?);
                    out.push(':');
                    if !step.trim().is_empty() {
                        out.push_str(&rewrite_one_duration(step, context, true)?);
                    }
                }
                None => out.push_str(&rewrite_one_duration(inner, context, true)?),
            }
            out.push(']');
            index = close + 1;
            continue;
        }
        if byte.is_ascii_alphabetic()
            && (index == 0 || !is_identifier_byte(bytes[index - 1]))
            && bytes.len() - index >= 6
            && bytes[index..index + 6].eq_ignore_ascii_case(b"offset")
            && bytes
                .get(index + 6)
                .is_none_or(|next| !is_identifier_byte(*next))
        {
            let after = index + 6;
            let mut cursor = after;
            while cursor < bytes.len() && bytes[cursor].is_ascii_whitespace() {
                cursor += 1;
            }
            // `offset` used as a label name or metric name is left alone.
            if cursor >= bytes.len()
                || matches!(
                    bytes[cursor],
                    b'=' | b'!' | b'~' | b',' | b'}' | b'{' | b'"' | b')'
                )
            {
                out.push_str(&text[index..after]);
                index = after;
                continue;
            }
            let atom_end = offset_atom_end(bytes, cursor);
            let atom = &text[cursor..atom_end];
            let unsigned = atom.trim_start_matches(['+', '-']).trim();
            if is_plain_duration(unsigned) {
                out.push_str(&text[index..atom_end]);
            } else {
                let value = evaluate(atom, context)?;
                let milliseconds = (value * 1000.0).round() as i64;
                // The parser rejects a zero duration; no offset is the same.
                if milliseconds != 0 {
                    out.push_str("offset ");
                    out.push_str(&format_duration_ms(milliseconds));
                }
            }
            index = atom_end;
            continue;
        }
        let character_end = index + text[index..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[index..character_end]);
        index = character_end;
    }
    Ok(out)
}

/// End of the single operand after `offset`: an optional sign, then a
/// number or duration, a parenthesised expression, or a function call.
fn offset_atom_end(bytes: &[u8], start: usize) -> usize {
    let mut index = start;
    while index < bytes.len() && matches!(bytes[index], b'+' | b'-' | b' ' | b'\t') {
        index += 1;
    }
    if index < bytes.len() && bytes[index] == b'(' {
        return find_closing(bytes, index, b'(', b')').map_or(bytes.len(), |close| close + 1);
    }
    while index < bytes.len() && (is_identifier_byte(bytes[index]) || bytes[index] == b'.') {
        index += 1;
    }
    if index < bytes.len() && bytes[index] == b'(' {
        return find_closing(bytes, index, b'(', b')').map_or(bytes.len(), |close| close + 1);
    }
    index
}

fn find_closing(bytes: &[u8], open_index: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0;
    let mut index = open_index;
    while index < bytes.len() {
        let byte = bytes[index];
        if matches!(byte, b'"' | b'\'' | b'`') {
            index = skip_string(bytes, index);
            continue;
        }
        if byte == open {
            depth += 1;
        } else if byte == close {
            depth -= 1;
            if depth == 0 {
                return Some(index);
            }
        }
        index += 1;
    }
    None
}

fn split_top_level_colon(inner: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    for (index, byte) in inner.bytes().enumerate() {
        match byte {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b':' if depth == 0 => return Some((&inner[..index], &inner[index + 1..])),
            _ => {}
        }
    }
    None
}

fn rewrite_one_duration(
    text: &str,
    context: &Context,
    must_be_positive: bool,
) -> Result<String, QueryError> {
    if is_plain_duration(text) {
        return Ok(text.to_string());
    }
    let seconds = evaluate(text, context)?;
    let milliseconds = (seconds * 1000.0).round() as i64;
    if must_be_positive && milliseconds <= 0 {
        return Err(parse_error(format!(
            "duration must be greater than 0, got {}",
            text.trim()
        )));
    }
    Ok(format_duration_ms(milliseconds))
}

// --- duration arithmetic -----------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(f64),
    Identifier(String),
    Operator(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte.is_ascii_whitespace() {
            index += 1;
            continue;
        }
        if byte.is_ascii_digit() || byte == b'.' {
            let start = index;
            while index < bytes.len() && (bytes[index].is_ascii_digit() || bytes[index] == b'.') {
                index += 1;
            }
            // Exponent.
            if index < bytes.len()
                && matches!(bytes[index], b'e' | b'E')
                && bytes
                    .get(index + 1)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b'+' || *b == b'-')
            {
                index += 2;
                while index < bytes.len() && bytes[index].is_ascii_digit() {
                    index += 1;
                }
            }
            if index < bytes.len() && bytes[index].is_ascii_alphabetic() {
                // A duration literal such as 1h30m or 500ms.
                while index < bytes.len() && bytes[index].is_ascii_alphanumeric() {
                    index += 1;
                }
                let literal = &text[start..index];
                let milliseconds = parse_duration_literal(literal)
                    .ok_or_else(|| parse_error(format!("bad duration {literal:?}")))?;
                tokens.push(Token::Number(milliseconds as f64 / 1000.0));
            } else {
                let literal = &text[start..index];
                let value: f64 = literal
                    .parse()
                    .map_err(|_| parse_error(format!("bad number {literal:?}")))?;
                tokens.push(Token::Number(value));
            }
            continue;
        }
        if byte.is_ascii_alphabetic() || byte == b'_' {
            let start = index;
            while index < bytes.len()
                && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
            {
                index += 1;
            }
            tokens.push(Token::Identifier(text[start..index].to_ascii_lowercase()));
            continue;
        }
        if matches!(
            byte,
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'(' | b')' | b','
        ) {
            tokens.push(Token::Operator(byte as char));
            index += 1;
            continue;
        }
        return Err(parse_error(format!(
            "unexpected character in duration expression: {:?}",
            byte as char
        )));
    }
    Ok(tokens)
}

fn parse_duration_literal(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let mut index = 0;
    let mut total: i64 = 0;
    while index < bytes.len() {
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        let number: i64 = text.get(start..index)?.parse().ok()?;
        let unit_start = index;
        while index < bytes.len() && bytes[index].is_ascii_alphabetic() {
            index += 1;
        }
        let unit = match &text[unit_start..index] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    Some(total)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    context: &'a Context,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn expect_operator(&mut self, operator: char) -> Result<(), QueryError> {
        match self.next() {
            Some(Token::Operator(found)) if found == operator => Ok(()),
            _ => Err(parse_error(format!(
                "expected {operator:?} in duration expression"
            ))),
        }
    }

    /// additive := multiplicative (("+"|"-") multiplicative)*
    fn additive(&mut self) -> Result<f64, QueryError> {
        let mut value = self.multiplicative()?;
        while let Some(Token::Operator(operator @ ('+' | '-'))) = self.peek().cloned() {
            self.position += 1;
            let right = self.multiplicative()?;
            value = if operator == '+' {
                value + right
            } else {
                value - right
            };
        }
        Ok(value)
    }

    /// multiplicative := unary (("*"|"/"|"%") unary)*
    fn multiplicative(&mut self) -> Result<f64, QueryError> {
        let mut value = self.unary()?;
        while let Some(Token::Operator(operator @ ('*' | '/' | '%'))) = self.peek().cloned() {
            self.position += 1;
            let right = self.unary()?;
            value = match operator {
                '*' => value * right,
                '/' => value / right,
                _ => value % right,
            };
        }
        Ok(value)
    }

    /// unary := ("+"|"-") unary | power — a sign binds looser than `^`.
    fn unary(&mut self) -> Result<f64, QueryError> {
        match self.peek() {
            Some(Token::Operator('-')) => {
                self.position += 1;
                Ok(-self.unary()?)
            }
            Some(Token::Operator('+')) => {
                self.position += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    /// power := primary ("^" unary)?  (right-associative)
    fn power(&mut self) -> Result<f64, QueryError> {
        let base = self.primary()?;
        if let Some(Token::Operator('^')) = self.peek() {
            self.position += 1;
            let exponent = self.unary()?;
            return Ok(base.powf(exponent));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<f64, QueryError> {
        match self.next() {
            Some(Token::Number(value)) => Ok(value),
            Some(Token::Operator('(')) => {
                let value = self.additive()?;
                self.expect_operator(')')?;
                Ok(value)
            }
            Some(Token::Identifier(name)) => {
                self.expect_operator('(')?;
                let mut arguments = Vec::new();
                if !matches!(self.peek(), Some(Token::Operator(')'))) {
                    loop {
                        arguments.push(self.additive()?);
                        if let Some(Token::Operator(',')) = self.peek() {
                            self.position += 1;
                            continue;
                        }
                        break;
                    }
                }
                self.expect_operator(')')?;
                match (name.as_str(), arguments.as_slice()) {
                    ("step", []) => Ok(self.context.step_ms as f64 / 1000.0),
                    ("range", []) => Ok(self.context.range_ms as f64 / 1000.0),
                    ("min_of", [first, rest @ ..]) => {
                        Ok(rest.iter().fold(*first, |acc, value| acc.min(*value)))
                    }
                    ("max_of", [first, rest @ ..]) => {
                        Ok(rest.iter().fold(*first, |acc, value| acc.max(*value)))
                    }
                    _ => Err(parse_error(format!(
                        "function {name}() is not allowed in a duration expression"
                    ))),
                }
            }
            _ => Err(parse_error("unexpected end of duration expression")),
        }
    }
}

/// Evaluates a duration expression to seconds.
fn evaluate(text: &str, context: &Context) -> Result<f64, QueryError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        context,
    };
    let value = parser.additive()?;
    if parser.position != parser.tokens.len() {
        return Err(parse_error(format!(
            "unexpected token in duration expression {:?}",
            text.trim()
        )));
    }
    if !value.is_finite() {
        return Err(parse_error(format!(
            "duration expression {:?} is not finite",
            text.trim()
        )));
    }
    Ok(value)
}

// --- info() selectors --------------------------------------------------------

/// The second argument of `info()` may consist of matchers that all accept
/// the empty string (`{data=~".*"}`), which the parser rejects for ordinary
/// selectors; a reserved matcher makes it acceptable and is ignored later.
fn rewrite_info_selectors(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut insertions: Vec<usize> = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if matches!(byte, b'"' | b'\'' | b'`') {
            index = skip_string(bytes, index);
            continue;
        }
        if bytes[index..].starts_with(b"info")
            && (index == 0 || !is_identifier_byte(bytes[index - 1]))
        {
            let mut cursor = index + 4;
            while cursor < bytes.len() && bytes[cursor].is_ascii_whitespace() {
                cursor += 1;
            }
            if cursor < bytes.len()
                && bytes[cursor] == b'('
                && let Some(close) = find_closing(bytes, cursor, b'(', b')')
            {
                // Find the top-level comma.
                let mut depth = 0;
                let mut position = cursor + 1;
                while position < close {
                    match bytes[position] {
                        b'"' | b'\'' | b'`' => {
                            position = skip_string(bytes, position);
                            continue;
                        }
                        b'(' | b'[' | b'{' => depth += 1,
                        b')' | b']' | b'}' => depth -= 1,
                        b',' if depth == 0 => break,
                        _ => {}
                    }
                    position += 1;
                }
                if position < close {
                    let mut argument_start = position + 1;
                    while argument_start < close && bytes[argument_start].is_ascii_whitespace() {
                        argument_start += 1;
                    }
                    if bytes[argument_start] == b'{' {
                        insertions.push(argument_start + 1);
                    }
                }
            }
        }
        index += 1;
    }
    let mut out = text.to_string();
    for position in insertions.into_iter().rev() {
        let after = out[position..].trim_start();
        let separator = if after.starts_with('}') { "" } else { "," };
        out.insert_str(position, &format!("{MODIFIER_LABEL}=\"info\"{separator}"));
    }
    out
}

// --- anchored / smoothed ---------------------------------------------------

fn rewrite_modifiers(text: &str) -> String {
    let mut current = text.to_string();
    loop {
        let Some((keyword_start, keyword_end, keyword)) = find_modifier_keyword(&current) else {
            return current;
        };
        let Some(rewritten) = attach_modifier(&current, keyword_start, keyword_end, keyword) else {
            return current;
        };
        current = rewritten;
    }
}

fn find_modifier_keyword(text: &str) -> Option<(usize, usize, &'static str)> {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if matches!(byte, b'"' | b'\'' | b'`') {
            index = skip_string(bytes, index);
            continue;
        }
        if byte.is_ascii_alphabetic() && (index == 0 || !is_identifier_byte(bytes[index - 1])) {
            let start = index;
            while index < bytes.len() && is_identifier_byte(bytes[index]) {
                index += 1;
            }
            let word = &text[start..index];
            for keyword in ["anchored", "smoothed"] {
                if word == keyword {
                    // A keyword follows a selector (or its modifiers), never
                    // an operator or an opening bracket.
                    let before = text[..start].trim_end();
                    if before
                        .ends_with(|c: char| c == ']' || c == '}' || is_identifier_byte(c as u8))
                        && !before.ends_with("by")
                    {
                        return Some((start, index, keyword));
                    }
                }
            }
            continue;
        }
        index += 1;
    }
    None
}

/// Moves the keyword at `[keyword_start, keyword_end)` into a matcher on the
/// selector before it.
fn attach_modifier(
    text: &str,
    keyword_start: usize,
    keyword_end: usize,
    keyword: &str,
) -> Option<String> {
    let bytes = text.as_bytes();
    // Skip back over `offset X` and `@ X` modifiers.
    let mut end = keyword_start;
    loop {
        let trimmed = text[..end].trim_end().len();
        let word_start = text[..trimmed]
            .rfind(|c: char| c.is_whitespace())
            .map_or(0, |found| found + 1);
        let before_word = text[..word_start].trim_end();
        if before_word.ends_with("offset") || before_word.ends_with('@') {
            let modifier_start = if before_word.ends_with('@') {
                before_word.len() - 1
            } else {
                before_word.len() - "offset".len()
            };
            end = modifier_start;
            continue;
        }
        end = trimmed;
        break;
    }
    let mut selector_end = end;
    if selector_end > 0 && bytes[selector_end - 1] == b']' {
        // Find the matching '['.
        let mut depth = 0;
        let mut index = selector_end;
        while index > 0 {
            index -= 1;
            match bytes[index] {
                b']' => depth += 1,
                b'[' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        selector_end = text[..index].trim_end().len();
    }
    let matcher = format!("{MODIFIER_LABEL}=\"{keyword}\"");
    let insertion;
    let insert_at;
    if selector_end > 0 && bytes[selector_end - 1] == b'}' {
        let close = selector_end - 1;
        let before_close = text[..close].trim_end();
        insertion = if before_close.ends_with('{') || before_close.ends_with(',') {
            matcher
        } else {
            format!(",{matcher}")
        };
        insert_at = close;
    } else if selector_end > 0 && is_identifier_byte(bytes[selector_end - 1]) {
        insertion = format!("{{{matcher}}}");
        insert_at = selector_end;
    } else {
        return None;
    }
    let mut out = String::with_capacity(text.len() + insertion.len());
    out.push_str(&text[..insert_at]);
    out.push_str(&insertion);
    out.push_str(&text[insert_at..keyword_start]);
    out.push_str(&text[keyword_end..]);
    Some(out)
}

/// The `anchored`/`smoothed` modifier of a selector, if any.
pub(crate) fn selector_modifier(
    selector: &promql_parser::parser::VectorSelector,
) -> Option<&'static str> {
    selector
        .matchers
        .matchers
        .iter()
        .chain(selector.matchers.or_matchers.iter().flatten())
        .find(|matcher| matcher.name == MODIFIER_LABEL)
        .and_then(|matcher| match matcher.value.as_str() {
            "anchored" => Some("anchored"),
            "smoothed" => Some("smoothed"),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prepare_never_panics(text in ".{0,80}") {
            let _ = prepare(&text, 15_000, 3_600_000);
        }

        #[test]
        fn prepare_never_panics_on_query_like_text(
            text in "[a-z_(){}\\[\\]:,=~\"'` 0-9.+*/%^@-]{0,60}(offset|anchored|smoothed|info|step\\(\\))?[a-z(){}\\[\\] 0-9+-]{0,20}"
        ) {
            let _ = prepare(&text, 0, 0);
        }
    }

    fn rewritten(text: &str, step_ms: i64) -> String {
        prepare(text, step_ms, 10_000)
            .map(|p| p.text)
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn durations_in_brackets_and_offsets_become_milliseconds() {
        assert_eq!(rewritten("changes(x[26m+4m])", 0), "changes(x[1800000ms])");
        assert_eq!(rewritten("x[1h30m % 1h]", 0), "x[1800000ms]");
        assert_eq!(rewritten("x[29s+1s:5s+5s]", 0), "x[30000ms:10000ms]");
        assert_eq!(rewritten("x[5m:]", 0), "x[5m:]");
        assert_eq!(rewritten("x offset (-2 ^ 2)", 0), "x offset -4000ms");
        assert_eq!(rewritten("x offset -2 * 2", 0), "x offset -2000ms * 2");
        assert_eq!(rewritten("x offset -step()*2", 5000), "x offset -5000ms*2");
        assert_eq!(
            rewritten("x offset min_of(step(), 1s)+8000", 5000),
            "x offset 1000ms+8000"
        );
        assert_eq!(rewritten("x{a=\"[1+1]\"}", 0), "x{a=\"[1+1]\"}");
    }

    #[test]
    fn modifiers_move_into_a_matcher() {
        assert_eq!(
            rewritten("rate(x[1m] anchored)", 0),
            format!("rate(x{{{MODIFIER_LABEL}=\"anchored\"}}[1m] )")
        );
        assert_eq!(
            rewritten("rate(x{a=\"b\"}[1m] smoothed)", 0),
            format!("rate(x{{a=\"b\",{MODIFIER_LABEL}=\"smoothed\"}}[1m] )")
        );
        assert_eq!(
            rewritten("x offset -100 smoothed + 0", 0),
            format!("x{{{MODIFIER_LABEL}=\"smoothed\"}} offset -100000ms  + 0")
        );
    }
}
