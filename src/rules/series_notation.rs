//! The series notation of Prometheus's test scripts and of `promtool test
//! rules` input: `metric{label="value"}` followed by value items `1 2 3`,
//! `a+bxn` / `a-bxn` (n+1 values stepping by b), `axn` (a repeated n+1
//! times), `_` and `_xn` (missing), `stale` (a staleness marker), and
//! native-histogram literals `{{...}}` (recognised so callers can skip
//! them). Shared by `guardia test rules` and the PromQL conformance harness.
//! Never panics on any input; `None` means "does not parse".

use crate::model::{Label, Labels, stale_nan};

/// Go's `ParseInt(s, 0, 64)` then `ParseFloat`, plus Inf/NaN spellings.
pub fn parse_number(text: &str, allow_hex: bool) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let (sign, body) = match text.as_bytes()[0] {
        b'+' => (1.0, &text[1..]),
        b'-' => (-1.0, &text[1..]),
        _ => (1.0, text),
    };
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(sign * f64::INFINITY);
    }
    if lower == "nan" {
        return Some(f64::NAN);
    }
    let cleaned = body.replace('_', "");
    if cleaned.is_empty() {
        return None;
    }
    if lower.starts_with("0x") {
        if !allow_hex {
            return None;
        }
        return i64::from_str_radix(&cleaned[2..], 16)
            .ok()
            .map(|v| sign * v as f64);
    }
    if cleaned.len() > 1
        && cleaned.starts_with('0')
        && cleaned.bytes().all(|b| b.is_ascii_digit())
        && let Ok(value) = i64::from_str_radix(&cleaned[1..], 8)
    {
        return Some(sign * value as f64);
    }
    if !cleaned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    cleaned.parse::<f64>().ok().map(|v| sign * v)
}

/// Reads a Go string literal starting at `chars[*index]`.
pub fn read_quoted(chars: &[char], index: &mut usize) -> Option<String> {
    let quote = *chars.get(*index)?;
    *index += 1;
    let mut out = String::new();
    if quote == '`' {
        while *index < chars.len() && chars[*index] != '`' {
            out.push(chars[*index]);
            *index += 1;
        }
        *index += 1;
        return Some(out);
    }
    let mut bytes: Vec<u8> = Vec::new();
    while *index < chars.len() {
        let c = chars[*index];
        *index += 1;
        if c == quote {
            out.push_str(&String::from_utf8_lossy(&bytes));
            return Some(out);
        }
        if c != '\\' {
            let mut buffer = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            continue;
        }
        let escape = *chars.get(*index)?;
        *index += 1;
        let simple = match escape {
            'n' => Some(b'\n'),
            't' => Some(b'\t'),
            'r' => Some(b'\r'),
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            '\'' => Some(b'\''),
            _ => None,
        };
        if let Some(byte) = simple {
            bytes.push(byte);
            continue;
        }
        let take_hex = |count: usize, index: &mut usize| -> Option<u32> {
            let digits: String = chars.get(*index..*index + count)?.iter().collect();
            *index += count;
            u32::from_str_radix(&digits, 16).ok()
        };
        match escape {
            'x' => bytes.push(take_hex(2, index)? as u8),
            'u' | 'U' => {
                let code = take_hex(if escape == 'u' { 4 } else { 8 }, index)?;
                let mut buffer = [0u8; 4];
                bytes.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut buffer).as_bytes());
            }
            '0'..='7' => {
                let digits: String = chars.get(*index - 1..*index + 2)?.iter().collect();
                *index += 2;
                bytes.push(u8::from_str_radix(&digits, 8).ok()?);
            }
            _ => return None,
        }
    }
    None
}

pub fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// Parses `metric{labels}` at the start of `text`; returns the labels and the rest.
pub fn parse_metric(text: &str) -> Option<(Labels, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut index = 0;
    let mut labels: Vec<Label> = Vec::new();
    while index < chars.len() && is_name_char(chars[index], index == 0) {
        index += 1;
    }
    if index > 0 {
        labels.push(Label::new(
            "__name__",
            chars[..index].iter().collect::<String>(),
        ));
    }
    if index < chars.len() && chars[index] == '{' {
        index += 1;
        loop {
            while index < chars.len() && chars[index].is_whitespace() {
                index += 1;
            }
            if index >= chars.len() {
                return None;
            }
            if chars[index] == '}' {
                index += 1;
                break;
            }
            let name = if matches!(chars[index], '"' | '\'' | '`') {
                read_quoted(&chars, &mut index)?
            } else {
                let start = index;
                while index < chars.len() && is_name_char(chars[index], index == start) {
                    index += 1;
                }
                if start == index {
                    return None;
                }
                chars[start..index].iter().collect()
            };
            while index < chars.len() && chars[index].is_whitespace() {
                index += 1;
            }
            if index < chars.len() && chars[index] == '=' {
                index += 1;
                while index < chars.len() && chars[index].is_whitespace() {
                    index += 1;
                }
                if index >= chars.len() || !matches!(chars[index], '"' | '\'' | '`') {
                    return None;
                }
                let value = read_quoted(&chars, &mut index)?;
                labels.push(Label::new(name, value));
            } else {
                labels.push(Label::new("__name__", name));
            }
            while index < chars.len() && chars[index].is_whitespace() {
                index += 1;
            }
            if index < chars.len() && chars[index] == ',' {
                index += 1;
            }
        }
    }
    if index == 0 {
        return None;
    }
    let rest: String = chars[index..].iter().collect();
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some((Labels::new(labels), rest.trim().to_string()))
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Point {
    Missing,
    Float(f64),
    Histogram,
}

/// Expands the value items of a series description.
pub fn parse_values(text: &str) -> Option<Vec<Point>> {
    let mut points = Vec::new();
    // Native-histogram literals contain spaces; cut them out first.
    let mut tokens: Vec<String> = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            let mut depth = 0;
            let mut end = rest.len();
            let bytes = rest.as_bytes();
            let mut position = 0;
            while position + 1 < bytes.len() {
                if &bytes[position..position + 2] == b"{{" {
                    depth += 1;
                    position += 2;
                    continue;
                }
                if &bytes[position..position + 2] == b"}}" {
                    depth -= 1;
                    position += 2;
                    if depth == 0 {
                        // Include a trailing +{{..}}xN or xN.
                        let tail_end = rest[position..]
                            .find(char::is_whitespace)
                            .map(|found| found + position)
                            .unwrap_or(rest.len());
                        if rest[position..tail_end].starts_with("+{{")
                            || rest[position..tail_end].starts_with("-{{")
                        {
                            continue;
                        }
                        end = tail_end;
                        break;
                    }
                    continue;
                }
                position += 1;
            }
            tokens.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        tokens.push(rest[..end].to_string());
        rest = rest[end..].trim_start();
    }
    for token in tokens {
        if token.starts_with("{{") {
            let count = token
                .rfind("}}x")
                .and_then(|found| token[found + 3..].parse::<usize>().ok())
                .map(|n| n + 1)
                .unwrap_or(1);
            points.extend(std::iter::repeat_n(Point::Histogram, count));
            continue;
        }
        if token == "_" {
            points.push(Point::Missing);
            continue;
        }
        if token == "stale" {
            points.push(Point::Float(stale_nan()));
            continue;
        }
        if let Some(count) = token.strip_prefix("_x") {
            let count: usize = count.parse().ok()?;
            points.extend(std::iter::repeat_n(Point::Missing, count));
            continue;
        }
        if let Some(x_position) = token.rfind('x')
            && x_position > 0
            && token[x_position + 1..].bytes().all(|b| b.is_ascii_digit())
            && x_position + 1 < token.len()
        {
            let count: usize = token[x_position + 1..].parse().ok()?;
            let head = &token[..x_position];
            let head_bytes = head.as_bytes();
            let mut operator_position = None;
            for position in 1..head_bytes.len() {
                if matches!(head_bytes[position], b'+' | b'-')
                    && !matches!(head_bytes[position - 1], b'e' | b'E')
                {
                    operator_position = Some(position);
                }
            }
            match operator_position {
                Some(position) => {
                    let start = parse_number(&head[..position], false)?;
                    let step = parse_number(&head[position + 1..], false)?;
                    let step = if head_bytes[position] == b'-' {
                        -step
                    } else {
                        step
                    };
                    let mut value = start;
                    for _ in 0..=count {
                        points.push(Point::Float(value));
                        value += step;
                    }
                }
                None => {
                    let value = parse_number(head, false)?;
                    points.extend(std::iter::repeat_n(Point::Float(value), count + 1));
                }
            }
            continue;
        }
        points.push(Point::Float(parse_number(&token, false)?));
    }
    Some(points)
}
