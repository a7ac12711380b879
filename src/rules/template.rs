//! Go `text/template` as Prometheus uses it in alert labels and annotations:
//! `{{ $labels.x }}`, `{{ $value }}`, `{{ .Labels.x }}`, pipelines, `if`/
//! `else if`/`else`/`end`, `range`, `with`, variables, trim markers, and
//! Prometheus's function set (`humanize…`, `printf`, `reReplaceAll`,
//! `query` with `first`/`value`/`label`, …). The parser never panics on any
//! input; an execution error is returned as a value so a caller can put it
//! into one alert's annotation without failing the group.
//!
//! Missing map keys print as the empty string (Prometheus runs templates
//! with `missingkey=zero` over `map[string]string`), and an int literal is
//! not comparable with a float (`gt $value 80` is an error in Go, so here).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Prefix Prometheus puts before every alert template so `$labels`,
/// `$externalLabels`, `$externalURL` and `$value` exist.
pub const ALERT_TEMPLATE_DEFINITIONS: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Most nested blocks and pipeline parentheses the parser accepts; keeps
/// recursion bounded on hostile input.
const MAX_NESTING_DEPTH: usize = 100;

/// Most loop iterations and output bytes one execution may produce.
const MAX_RANGE_ITERATIONS: usize = 100_000;
const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Largest `printf` width and precision honoured, so `%999999999d` cannot
/// allocate gigabytes before the output limit is checked.
const MAX_FORMAT_WIDTH: usize = 10_000;
const MAX_FORMAT_PRECISION: usize = 1_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The template text does not parse.
    #[error("template: {name}:{line}: {message}")]
    Parse {
        name: String,
        line: usize,
        message: String,
    },
    /// The template parsed but failed while running.
    #[error("template: {name}:{line}: executing \"{name}\" at <{at}>: {message}")]
    Execute {
        name: String,
        line: usize,
        at: String,
        message: String,
    },
}

/// A value as templates see it.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateValue {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Map(BTreeMap<String, TemplateValue>),
    List(Vec<TemplateValue>),
}

impl TemplateValue {
    /// A `map[string]string` from label pairs.
    pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> TemplateValue {
        TemplateValue::Map(
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_string(), TemplateValue::Str(value.to_string())))
                .collect(),
        )
    }

    /// One query result element, as Prometheus's `sample` type (`.Labels`, `.Value`).
    pub fn sample<'a>(
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
    ) -> TemplateValue {
        let mut fields = BTreeMap::new();
        fields.insert("Labels".to_string(), TemplateValue::string_map(labels));
        fields.insert("Value".to_string(), TemplateValue::Float(value));
        TemplateValue::Map(fields)
    }

    fn is_true(&self) -> bool {
        match self {
            TemplateValue::Nil => false,
            TemplateValue::Bool(value) => *value,
            TemplateValue::Int(value) => *value != 0,
            TemplateValue::Float(value) => *value != 0.0,
            TemplateValue::Str(value) => !value.is_empty(),
            TemplateValue::Map(value) => !value.is_empty(),
            TemplateValue::List(value) => !value.is_empty(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            TemplateValue::Nil => "nil",
            TemplateValue::Bool(_) => "bool",
            TemplateValue::Int(_) => "int",
            TemplateValue::Float(_) => "float64",
            TemplateValue::Str(_) => "string",
            TemplateValue::Map(_) => "map",
            TemplateValue::List(_) => "slice",
        }
    }

    /// Go's `fmt.Sprint` of the value.
    fn print(&self, out: &mut String) {
        match self {
            TemplateValue::Nil => out.push_str("<no value>"),
            TemplateValue::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            TemplateValue::Int(value) => {
                let _ = write!(out, "{value}");
            }
            TemplateValue::Float(value) => out.push_str(&format_go_float(*value, 'g', None)),
            TemplateValue::Str(value) => out.push_str(value),
            TemplateValue::Map(map) => {
                out.push_str("map[");
                for (index, (key, value)) in map.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    out.push_str(key);
                    out.push(':');
                    value.print(out);
                }
                out.push(']');
            }
            TemplateValue::List(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    item.print(out);
                }
                out.push(']');
            }
        }
    }

    fn to_display(&self) -> String {
        let mut out = String::new();
        self.print(&mut out);
        out
    }
}

/// Result rows of a template query: (label pairs, value).
pub type QueryRows = Vec<(Vec<(String, String)>, f64)>;

/// Runs PromQL for the `query` function at the template's evaluation time.
pub type TemplateQueryFunction<'a> = dyn Fn(&str) -> Result<QueryRows, String> + 'a;

// ------------------------------------------------------------------ lexing

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(Vec<String>),
    Variable(String, Vec<String>),
    Dot,
    Identifier(String),
    Str(String),
    Number(String),
    LeftParen,
    RightParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

/// One `{{ … }}` or a run of text between them.
#[derive(Debug)]
enum Segment {
    Text(String),
    Action { tokens: Vec<Token>, line: usize },
}

fn split_segments(name: &str, source: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut segments = Vec::new();
    let mut rest = source;
    let mut line = 1usize;
    let mut trim_next_text = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let mut text = rest;
            if trim_next_text {
                text = text.trim_start();
            }
            segments.push(Segment::Text(text.to_string()));
            break;
        };
        let mut text = &rest[..open];
        if trim_next_text {
            text = text.trim_start();
        }
        let mut inside = &rest[open + 2..];
        let trims_before = inside.starts_with("- ")
            || inside.starts_with("-\t")
            || inside.starts_with("-\n")
            || inside.starts_with("-\r");
        if trims_before {
            text = text.trim_end();
            inside = &inside[1..];
        }
        line += rest[..open].matches('\n').count();
        if !text.is_empty() {
            segments.push(Segment::Text(text.to_string()));
        }
        let action_line = line;
        let trimmed_inside = inside.trim_start();
        if trimmed_inside.starts_with("/*") {
            let Some(end) = trimmed_inside.find("*/") else {
                return Err(parse_error(name, action_line, "unclosed comment"));
            };
            let after = trimmed_inside[end + 2..].trim_start();
            let (after, trims_after) = if let Some(after) = after.strip_prefix("-}}") {
                (after, true)
            } else if let Some(after) = after.strip_prefix("}}") {
                (after, false)
            } else {
                return Err(parse_error(
                    name,
                    action_line,
                    "comment ends before closing delimiter",
                ));
            };
            line += trimmed_inside[..end].matches('\n').count();
            trim_next_text = trims_after;
            rest = after;
            continue;
        }
        let (tokens, consumed, trims_after) = lex_action(name, inside, action_line)?;
        line += inside[..consumed].matches('\n').count();
        segments.push(Segment::Action {
            tokens,
            line: action_line,
        });
        trim_next_text = trims_after;
        rest = &inside[consumed..];
    }
    Ok(segments)
}

fn parse_error(name: &str, line: usize, message: &str) -> TemplateError {
    TemplateError::Parse {
        name: name.to_string(),
        line,
        message: message.to_string(),
    }
}

fn is_identifier_char(character: char) -> bool {
    character.is_alphanumeric() || character == '_'
}

/// Lexes one action; returns its tokens, the bytes consumed (closing
/// delimiter included) and whether it ends with a trim marker.
fn lex_action(
    name: &str,
    text: &str,
    line: usize,
) -> Result<(Vec<Token>, usize, bool), TemplateError> {
    let mut tokens = Vec::new();
    let characters: Vec<(usize, char)> = text.char_indices().collect();
    let mut index = 0usize;
    let byte_at = |index: usize| characters.get(index).map_or(text.len(), |(byte, _)| *byte);
    while index < characters.len() {
        let (_, character) = characters[index];
        let rest = &text[byte_at(index)..];
        if rest.starts_with("}}") {
            return Ok((tokens, byte_at(index) + 2, false));
        }
        if character.is_whitespace() {
            let after_space = rest.trim_start();
            if let Some(after) = after_space.strip_prefix("-}}") {
                let consumed = text.len() - after.len();
                return Ok((tokens, consumed, true));
            }
            index += 1;
            continue;
        }
        match character {
            '(' => {
                tokens.push(Token::LeftParen);
                index += 1;
            }
            ')' => {
                tokens.push(Token::RightParen);
                index += 1;
            }
            '|' => {
                tokens.push(Token::Pipe);
                index += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                index += 1;
            }
            '=' => {
                tokens.push(Token::Assign);
                index += 1;
            }
            ':' => {
                if characters.get(index + 1).map(|(_, c)| *c) != Some('=') {
                    return Err(parse_error(name, line, "expected :="));
                }
                tokens.push(Token::Declare);
                index += 2;
            }
            '"' => {
                index += 1;
                let mut value = String::new();
                loop {
                    let Some(&(_, next)) = characters.get(index) else {
                        return Err(parse_error(name, line, "unterminated quoted string"));
                    };
                    index += 1;
                    match next {
                        '"' => break,
                        '\n' => return Err(parse_error(name, line, "unterminated quoted string")),
                        '\\' => {
                            let Some(&(_, escaped)) = characters.get(index) else {
                                return Err(parse_error(name, line, "unterminated quoted string"));
                            };
                            index += 1;
                            value.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                '\'' => '\'',
                                '0' => '\0',
                                _ => {
                                    return Err(parse_error(
                                        name,
                                        line,
                                        &format!("invalid syntax: unknown escape \\{escaped}"),
                                    ));
                                }
                            });
                        }
                        other => value.push(other),
                    }
                }
                tokens.push(Token::Str(value));
            }
            '`' => {
                index += 1;
                let start = byte_at(index);
                loop {
                    let Some(&(_, next)) = characters.get(index) else {
                        return Err(parse_error(name, line, "unterminated raw quoted string"));
                    };
                    index += 1;
                    if next == '`' {
                        break;
                    }
                }
                tokens.push(Token::Str(text[start..byte_at(index) - 1].to_string()));
            }
            '.' | '$' => {
                let is_variable = character == '$';
                let start = index;
                index += 1;
                while index < characters.len() && is_identifier_char(characters[index].1) {
                    index += 1;
                }
                let head = text[byte_at(start)..byte_at(index)].to_string();
                let mut fields = Vec::new();
                while index < characters.len() && characters[index].1 == '.' {
                    let field_start = index + 1;
                    index += 1;
                    while index < characters.len() && is_identifier_char(characters[index].1) {
                        index += 1;
                    }
                    if field_start == index {
                        return Err(parse_error(name, line, "bad character after '.'"));
                    }
                    fields.push(text[byte_at(field_start)..byte_at(index)].to_string());
                }
                if is_variable {
                    tokens.push(Token::Variable(head, fields));
                } else if head == "." {
                    if fields.is_empty() {
                        tokens.push(Token::Dot);
                    } else {
                        return Err(parse_error(name, line, "unexpected . after term"));
                    }
                } else {
                    let mut all = vec![head[1..].to_string()];
                    all.extend(fields);
                    tokens.push(Token::Field(all));
                }
            }
            '0'..='9' | '-' | '+' => {
                let start = index;
                index += 1;
                while index < characters.len() {
                    let next = characters[index].1;
                    let previous = characters[index - 1].1;
                    if next.is_ascii_alphanumeric()
                        || next == '.'
                        || next == '_'
                        || ((next == '-' || next == '+') && matches!(previous, 'e' | 'E'))
                    {
                        index += 1;
                    } else {
                        break;
                    }
                }
                let number = text[byte_at(start)..byte_at(index)].to_string();
                if parse_number_literal(&number).is_none() {
                    return Err(parse_error(
                        name,
                        line,
                        &format!("bad number syntax: {number:?}"),
                    ));
                }
                tokens.push(Token::Number(number));
            }
            other if other.is_alphabetic() || other == '_' => {
                let start = index;
                while index < characters.len() && is_identifier_char(characters[index].1) {
                    index += 1;
                }
                tokens.push(Token::Identifier(
                    text[byte_at(start)..byte_at(index)].to_string(),
                ));
            }
            other => {
                return Err(parse_error(
                    name,
                    line,
                    &format!("unexpected {other:?} in command"),
                ));
            }
        }
    }
    Err(parse_error(name, line, "unclosed action"))
}

fn parse_number_literal(text: &str) -> Option<TemplateValue> {
    let cleaned = text.replace('_', "");
    let (negative, body) = match cleaned.strip_prefix('-') {
        Some(body) => (true, body),
        None => (false, cleaned.strip_prefix('+').unwrap_or(&cleaned)),
    };
    if body.is_empty() {
        return None;
    }
    let is_hex = body.starts_with("0x") || body.starts_with("0X");
    if is_hex {
        let value = i64::from_str_radix(&body[2..], 16).ok()?;
        return Some(TemplateValue::Int(if negative { -value } else { value }));
    }
    if body.bytes().all(|byte| byte.is_ascii_digit()) {
        let value: i64 = body.parse().ok()?;
        return Some(TemplateValue::Int(if negative { -value } else { value }));
    }
    if !body.bytes().next()?.is_ascii_digit() && !body.starts_with('.') {
        return None;
    }
    let value: f64 = body.parse().ok()?;
    Some(TemplateValue::Float(if negative { -value } else { value }))
}

// ------------------------------------------------------------------ parsing

#[derive(Debug, Clone)]
enum Operand {
    Field(Vec<String>),
    Variable(String, Vec<String>),
    Dot,
    Function(String),
    Literal(TemplateValue),
    Nested(Box<Pipeline>),
}

#[derive(Debug, Clone)]
struct Command {
    operands: Vec<Operand>,
}

#[derive(Debug, Clone)]
struct Pipeline {
    declarations: Vec<String>,
    /// `=` rather than `:=`.
    is_assignment: bool,
    commands: Vec<Command>,
    line: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipeline: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipeline: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// A parsed template, ready to run many times.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

/// How a block list ended.
enum BlockEnd {
    Eof,
    End,
    Else(Option<Vec<Token>>, usize),
}

struct Parser<'a> {
    name: &'a str,
    segments: std::vec::IntoIter<Segment>,
    depth: usize,
}

const KNOWN_FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "html",
    "js",
    "urlquery",
    "slice",
    "call",
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "stripPort",
    "stripDomain",
    "now",
];

impl Parser<'_> {
    fn parse_list(&mut self) -> Result<(Vec<Node>, BlockEnd), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return Err(parse_error(self.name, 0, "template nested too deeply"));
        }
        let mut nodes = Vec::new();
        while let Some(segment) = self.segments.next() {
            let (tokens, line) = match segment {
                Segment::Text(text) => {
                    nodes.push(Node::Text(text));
                    continue;
                }
                Segment::Action { tokens, line } => (tokens, line),
            };
            let keyword = match tokens.first() {
                Some(Token::Identifier(word)) => word.as_str(),
                None => return Err(parse_error(self.name, line, "missing value for command")),
                _ => "",
            };
            match keyword {
                "end" => {
                    self.depth -= 1;
                    return Ok((nodes, BlockEnd::End));
                }
                "else" => {
                    self.depth -= 1;
                    let rest = if tokens.len() > 1 {
                        Some(tokens[1..].to_vec())
                    } else {
                        None
                    };
                    return Ok((nodes, BlockEnd::Else(rest, line)));
                }
                "if" => nodes.push(self.parse_if(&tokens[1..], line)?),
                "range" | "with" => {
                    let pipeline = self.parse_pipeline(&tokens[1..], line, true)?;
                    let (body, end) = self.parse_list()?;
                    let otherwise = match end {
                        BlockEnd::End => Vec::new(),
                        BlockEnd::Else(None, _) => self.expect_end()?,
                        BlockEnd::Else(Some(_), else_line) => {
                            return Err(parse_error(self.name, else_line, "unexpected else if"));
                        }
                        BlockEnd::Eof => {
                            return Err(parse_error(self.name, line, "unexpected EOF"));
                        }
                    };
                    nodes.push(if keyword == "range" {
                        Node::Range {
                            pipeline,
                            body,
                            otherwise,
                        }
                    } else {
                        Node::With {
                            pipeline,
                            body,
                            otherwise,
                        }
                    });
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(parse_error(
                        self.name,
                        line,
                        &format!("{keyword} is not supported"),
                    ));
                }
                _ => nodes.push(Node::Action(self.parse_pipeline(&tokens, line, true)?)),
            }
        }
        self.depth -= 1;
        Ok((nodes, BlockEnd::Eof))
    }

    fn expect_end(&mut self) -> Result<Vec<Node>, TemplateError> {
        let (nodes, end) = self.parse_list()?;
        match end {
            BlockEnd::End => Ok(nodes),
            BlockEnd::Else(_, line) => {
                Err(parse_error(self.name, line, "expected end; found else"))
            }
            BlockEnd::Eof => Err(parse_error(self.name, 0, "unexpected EOF")),
        }
    }

    fn parse_if(&mut self, tokens: &[Token], line: usize) -> Result<Node, TemplateError> {
        let mut branches = Vec::new();
        let mut condition = self.parse_pipeline(tokens, line, true)?;
        loop {
            let (body, end) = self.parse_list()?;
            branches.push((condition, body));
            match end {
                BlockEnd::End => {
                    return Ok(Node::If {
                        branches,
                        otherwise: Vec::new(),
                    });
                }
                BlockEnd::Else(None, _) => {
                    let otherwise = self.expect_end()?;
                    return Ok(Node::If {
                        branches,
                        otherwise,
                    });
                }
                BlockEnd::Else(Some(rest), else_line) => {
                    if rest.first() != Some(&Token::Identifier("if".to_string())) {
                        return Err(parse_error(
                            self.name,
                            else_line,
                            "unexpected tokens after else",
                        ));
                    }
                    condition = self.parse_pipeline(&rest[1..], else_line, true)?;
                }
                BlockEnd::Eof => return Err(parse_error(self.name, line, "unexpected EOF")),
            }
        }
    }

    fn parse_pipeline(
        &mut self,
        tokens: &[Token],
        line: usize,
        allow_declarations: bool,
    ) -> Result<Pipeline, TemplateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return Err(parse_error(self.name, line, "template nested too deeply"));
        }
        let mut declarations = Vec::new();
        let mut is_assignment = false;
        let mut position = 0;
        if allow_declarations {
            // `$x :=`, `$x =`, or `$i, $x :=`.
            let mut probe = 0;
            let mut names = Vec::new();
            while let Some(Token::Variable(variable, fields)) = tokens.get(probe) {
                if !fields.is_empty() {
                    break;
                }
                names.push(variable.clone());
                probe += 1;
                if tokens.get(probe) == Some(&Token::Comma) && names.len() < 2 {
                    probe += 1;
                    continue;
                }
                break;
            }
            match tokens.get(probe) {
                Some(Token::Declare) if !names.is_empty() => {
                    declarations = names;
                    position = probe + 1;
                }
                Some(Token::Assign) if !names.is_empty() => {
                    declarations = names;
                    is_assignment = true;
                    position = probe + 1;
                }
                _ => {}
            }
        }
        let mut commands = Vec::new();
        let mut current = Vec::new();
        while position < tokens.len() {
            match &tokens[position] {
                Token::Pipe => {
                    if current.is_empty() {
                        return Err(parse_error(self.name, line, "missing command"));
                    }
                    commands.push(Command {
                        operands: std::mem::take(&mut current),
                    });
                    position += 1;
                }
                Token::LeftParen => {
                    let mut depth = 1usize;
                    let start = position + 1;
                    let mut end = start;
                    while end < tokens.len() {
                        match tokens[end] {
                            Token::LeftParen => depth += 1,
                            Token::RightParen => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        end += 1;
                    }
                    if end >= tokens.len() {
                        return Err(parse_error(self.name, line, "unclosed left paren"));
                    }
                    let nested = self.parse_pipeline(&tokens[start..end], line, false)?;
                    current.push(Operand::Nested(Box::new(nested)));
                    position = end + 1;
                }
                Token::RightParen => {
                    return Err(parse_error(self.name, line, "unexpected right paren"));
                }
                Token::Declare | Token::Assign | Token::Comma => {
                    return Err(parse_error(self.name, line, "unexpected token in operand"));
                }
                Token::Field(fields) => {
                    current.push(Operand::Field(fields.clone()));
                    position += 1;
                }
                Token::Variable(variable, fields) => {
                    current.push(Operand::Variable(variable.clone(), fields.clone()));
                    position += 1;
                }
                Token::Dot => {
                    current.push(Operand::Dot);
                    position += 1;
                }
                Token::Str(value) => {
                    current.push(Operand::Literal(TemplateValue::Str(value.clone())));
                    position += 1;
                }
                Token::Number(text) => {
                    let value = parse_number_literal(text).ok_or_else(|| {
                        parse_error(self.name, line, &format!("bad number syntax: {text:?}"))
                    })?;
                    current.push(Operand::Literal(value));
                    position += 1;
                }
                Token::Identifier(word) => {
                    let operand = match word.as_str() {
                        "true" => Operand::Literal(TemplateValue::Bool(true)),
                        "false" => Operand::Literal(TemplateValue::Bool(false)),
                        "nil" => Operand::Literal(TemplateValue::Nil),
                        name if KNOWN_FUNCTIONS.contains(&name) => Operand::Function(word.clone()),
                        _ => {
                            return Err(parse_error(
                                self.name,
                                line,
                                &format!("function {word:?} not defined"),
                            ));
                        }
                    };
                    current.push(operand);
                    position += 1;
                }
            }
        }
        if current.is_empty() {
            return Err(parse_error(self.name, line, "missing value for command"));
        }
        commands.push(Command { operands: current });
        self.depth -= 1;
        Ok(Pipeline {
            declarations,
            is_assignment,
            commands,
            line,
        })
    }
}

impl Template {
    /// Parses `source`; `name` appears in error messages (`__alert_X`).
    /// Never panics, whatever the input.
    pub fn parse(name: &str, source: &str) -> Result<Template, TemplateError> {
        let segments = split_segments(name, source)?;
        let mut parser = Parser {
            name,
            segments: segments.into_iter(),
            depth: 0,
        };
        let (nodes, end) = parser.parse_list()?;
        match end {
            BlockEnd::Eof => Ok(Template {
                name: name.to_string(),
                nodes,
            }),
            BlockEnd::End => Err(parse_error(name, 0, "unexpected {{end}}")),
            BlockEnd::Else(_, line) => Err(parse_error(name, line, "unexpected {{else}}")),
        }
    }

    /// Runs the template with `data` as `.`.
    pub fn execute(
        &self,
        data: &TemplateValue,
        query: Option<&TemplateQueryFunction<'_>>,
    ) -> Result<String, TemplateError> {
        let mut execution = Execution {
            name: &self.name,
            variables: vec![("$".to_string(), data.clone())],
            query,
            output: String::new(),
            iterations: 0,
        };
        execution.run_list(&self.nodes, data)?;
        Ok(execution.output)
    }
}

/// Parses and runs an alert template with Prometheus's variable prefix.
pub fn expand_alert_template(
    alert_name: &str,
    text: &str,
    data: &TemplateValue,
    query: Option<&TemplateQueryFunction<'_>>,
) -> Result<String, TemplateError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let source = format!("{ALERT_TEMPLATE_DEFINITIONS}{text}");
    let template = Template::parse(&format!("__alert_{alert_name}"), &source)?;
    template.execute(data, query)
}

/// The data an alert template sees as `.`.
pub fn alert_template_data(
    labels: &[(&str, &str)],
    external_labels: &[(&str, &str)],
    external_url: &str,
    value: f64,
) -> TemplateValue {
    let mut fields = BTreeMap::new();
    fields.insert(
        "Labels".to_string(),
        TemplateValue::string_map(labels.iter().copied()),
    );
    fields.insert(
        "ExternalLabels".to_string(),
        TemplateValue::string_map(external_labels.iter().copied()),
    );
    fields.insert(
        "ExternalURL".to_string(),
        TemplateValue::Str(external_url.to_string()),
    );
    fields.insert("Value".to_string(), TemplateValue::Float(value));
    TemplateValue::Map(fields)
}

// ------------------------------------------------------------------ execution

struct Execution<'a, 'q> {
    name: &'a str,
    variables: Vec<(String, TemplateValue)>,
    query: Option<&'a TemplateQueryFunction<'q>>,
    output: String,
    iterations: usize,
}

impl Execution<'_, '_> {
    fn error(&self, line: usize, at: &str, message: impl Into<String>) -> TemplateError {
        TemplateError::Execute {
            name: self.name.to_string(),
            line,
            at: at.to_string(),
            message: message.into(),
        }
    }

    fn run_list(&mut self, nodes: &[Node], dot: &TemplateValue) -> Result<(), TemplateError> {
        let scope = self.variables.len();
        for node in nodes {
            self.run_node(node, dot)?;
            if self.output.len() > MAX_OUTPUT_BYTES {
                return Err(self.error(0, "", "template output too large"));
            }
        }
        self.variables.truncate(scope);
        Ok(())
    }

    fn run_node(&mut self, node: &Node, dot: &TemplateValue) -> Result<(), TemplateError> {
        match node {
            Node::Text(text) => self.output.push_str(text),
            Node::Action(pipeline) => {
                let value = self.run_pipeline(pipeline, dot)?;
                if pipeline.declarations.is_empty() {
                    value.print(&mut self.output);
                }
            }
            Node::If {
                branches,
                otherwise,
            } => {
                for (condition, body) in branches {
                    let scope = self.variables.len();
                    let value = self.run_pipeline(condition, dot)?;
                    if value.is_true() {
                        self.run_list(body, dot)?;
                        self.variables.truncate(scope);
                        return Ok(());
                    }
                    self.variables.truncate(scope);
                }
                self.run_list(otherwise, dot)?;
            }
            Node::With {
                pipeline,
                body,
                otherwise,
            } => {
                let scope = self.variables.len();
                let value = self.run_pipeline(pipeline, dot)?;
                if value.is_true() {
                    self.run_list(body, &value)?;
                } else {
                    self.run_list(otherwise, dot)?;
                }
                self.variables.truncate(scope);
            }
            Node::Range {
                pipeline,
                body,
                otherwise,
            } => {
                let scope = self.variables.len();
                let declarations = pipeline.declarations.clone();
                let mut bare = pipeline.clone();
                bare.declarations.clear();
                let value = self.run_pipeline(&bare, dot)?;
                let items: Vec<(TemplateValue, TemplateValue)> = match value {
                    TemplateValue::List(items) => items
                        .into_iter()
                        .enumerate()
                        .map(|(index, item)| (TemplateValue::Int(index as i64), item))
                        .collect(),
                    TemplateValue::Map(map) => map
                        .into_iter()
                        .map(|(key, item)| (TemplateValue::Str(key), item))
                        .collect(),
                    TemplateValue::Nil => Vec::new(),
                    // Capped before collecting; the loop below stops at the limit anyway.
                    TemplateValue::Int(count) => (0..count
                        .clamp(0, MAX_RANGE_ITERATIONS as i64 + 1))
                        .map(|index| (TemplateValue::Int(index), TemplateValue::Int(index)))
                        .collect(),
                    other => {
                        return Err(self.error(
                            pipeline.line,
                            "range",
                            format!("range can't iterate over {}", other.to_display()),
                        ));
                    }
                };
                if items.is_empty() {
                    self.run_list(otherwise, dot)?;
                }
                for (key, item) in items {
                    self.iterations += 1;
                    if self.iterations > MAX_RANGE_ITERATIONS {
                        return Err(self.error(pipeline.line, "range", "too many iterations"));
                    }
                    let inner_scope = self.variables.len();
                    match declarations.as_slice() {
                        [value_name] => self.variables.push((value_name.clone(), item.clone())),
                        [key_name, value_name] => {
                            self.variables.push((key_name.clone(), key));
                            self.variables.push((value_name.clone(), item.clone()));
                        }
                        _ => {}
                    }
                    self.run_list(body, &item)?;
                    self.variables.truncate(inner_scope);
                }
                self.variables.truncate(scope);
            }
        }
        Ok(())
    }

    fn run_pipeline(
        &mut self,
        pipeline: &Pipeline,
        dot: &TemplateValue,
    ) -> Result<TemplateValue, TemplateError> {
        let mut previous: Option<TemplateValue> = None;
        for command in &pipeline.commands {
            previous = Some(self.run_command(command, dot, previous, pipeline.line)?);
        }
        let value = previous.unwrap_or(TemplateValue::Nil);
        for variable in &pipeline.declarations {
            if pipeline.is_assignment {
                match self
                    .variables
                    .iter_mut()
                    .rev()
                    .find(|(name, _)| name == variable)
                {
                    Some(slot) => slot.1 = value.clone(),
                    None => {
                        return Err(self.error(
                            pipeline.line,
                            variable,
                            format!("undefined variable: {variable}"),
                        ));
                    }
                }
            } else {
                self.variables.push((variable.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn lookup_variable(&self, name: &str, line: usize) -> Result<TemplateValue, TemplateError> {
        self.variables
            .iter()
            .rev()
            .find(|(variable, _)| variable == name)
            .map(|(_, value)| value.clone())
            .ok_or_else(|| self.error(line, name, format!("undefined variable: {name}")))
    }

    fn access_fields(
        &self,
        mut value: TemplateValue,
        fields: &[String],
        line: usize,
    ) -> Result<TemplateValue, TemplateError> {
        for field in fields {
            value = match value {
                TemplateValue::Map(mut map) => map
                    .remove(field)
                    .unwrap_or_else(|| TemplateValue::Str(String::new())),
                TemplateValue::Nil => {
                    return Err(self.error(
                        line,
                        &format!(".{field}"),
                        format!("nil pointer evaluating interface {{}}.{field}"),
                    ));
                }
                other => {
                    return Err(self.error(
                        line,
                        &format!(".{field}"),
                        format!("can't evaluate field {field} in type {}", other.kind()),
                    ));
                }
            };
        }
        Ok(value)
    }

    fn evaluate_operand(
        &mut self,
        operand: &Operand,
        dot: &TemplateValue,
        line: usize,
    ) -> Result<TemplateValue, TemplateError> {
        match operand {
            Operand::Dot => Ok(dot.clone()),
            Operand::Field(fields) => self.access_fields(dot.clone(), fields, line),
            Operand::Variable(name, fields) => {
                let value = self.lookup_variable(name, line)?;
                self.access_fields(value, fields, line)
            }
            Operand::Literal(value) => Ok(value.clone()),
            Operand::Nested(pipeline) => self.run_pipeline(pipeline, dot),
            Operand::Function(name) => self.call_function(name, Vec::new(), line),
        }
    }

    fn run_command(
        &mut self,
        command: &Command,
        dot: &TemplateValue,
        piped: Option<TemplateValue>,
        line: usize,
    ) -> Result<TemplateValue, TemplateError> {
        let Some(first) = command.operands.first() else {
            return Err(self.error(line, "", "empty command"));
        };
        if let Operand::Function(name) = first {
            // `and`/`or` short-circuit in Go; evaluating all operands first
            // differs only for side effects, which templates here do not have.
            let mut arguments = Vec::with_capacity(command.operands.len());
            for operand in &command.operands[1..] {
                arguments.push(self.evaluate_operand(operand, dot, line)?);
            }
            if let Some(value) = piped {
                arguments.push(value);
            }
            return self.call_function(name, arguments, line);
        }
        if command.operands.len() > 1 || piped.is_some() {
            return Err(self.error(line, "", "can't give argument to non-function"));
        }
        self.evaluate_operand(first, dot, line)
    }

    fn call_function(
        &mut self,
        name: &str,
        arguments: Vec<TemplateValue>,
        line: usize,
    ) -> Result<TemplateValue, TemplateError> {
        let at = name.to_string();
        let fail = |message: String| -> TemplateError {
            TemplateError::Execute {
                name: self.name.to_string(),
                line,
                at: at.clone(),
                message: format!("error calling {name}: {message}"),
            }
        };
        let want = |count: usize| -> Result<(), TemplateError> {
            if arguments.len() == count {
                Ok(())
            } else {
                Err(TemplateError::Execute {
                    name: self.name.to_string(),
                    line,
                    at: at.clone(),
                    message: format!(
                        "wrong number of args for {name}: want {count} got {}",
                        arguments.len()
                    ),
                })
            }
        };
        match name {
            "and" | "or" => {
                if arguments.is_empty() {
                    want(1)?;
                }
                let mut last = TemplateValue::Nil;
                for argument in arguments {
                    let truth = argument.is_true();
                    last = argument;
                    if (name == "and") != truth {
                        return Ok(last);
                    }
                }
                Ok(last)
            }
            "not" => {
                want(1)?;
                Ok(TemplateValue::Bool(!arguments[0].is_true()))
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if arguments.len() < 2 {
                    want(2)?;
                }
                let ordering = |left: &TemplateValue, right: &TemplateValue| {
                    compare_values(left, right).map_err(&fail)
                };
                if name == "eq" {
                    for candidate in &arguments[1..] {
                        if ordering(&arguments[0], candidate)? == Some(std::cmp::Ordering::Equal) {
                            return Ok(TemplateValue::Bool(true));
                        }
                    }
                    return Ok(TemplateValue::Bool(false));
                }
                want(2)?;
                let order = ordering(&arguments[0], &arguments[1])?;
                use std::cmp::Ordering::{Equal, Greater, Less};
                let result = match (name, order) {
                    ("ne", order) => order != Some(Equal),
                    (_, None) => false,
                    ("lt", Some(order)) => order == Less,
                    ("le", Some(order)) => order != Greater,
                    ("gt", Some(order)) => order == Greater,
                    (_, Some(order)) => order != Less,
                };
                Ok(TemplateValue::Bool(result))
            }
            "len" => {
                want(1)?;
                match &arguments[0] {
                    TemplateValue::Str(text) => Ok(TemplateValue::Int(text.len() as i64)),
                    TemplateValue::List(items) => Ok(TemplateValue::Int(items.len() as i64)),
                    TemplateValue::Map(map) => Ok(TemplateValue::Int(map.len() as i64)),
                    other => Err(fail(format!("len of type {}", other.kind()))),
                }
            }
            "index" => {
                if arguments.is_empty() {
                    want(1)?;
                }
                let mut value = arguments[0].clone();
                for key in &arguments[1..] {
                    value = match (value, key) {
                        (TemplateValue::Map(mut map), TemplateValue::Str(key)) => map
                            .remove(key)
                            .unwrap_or_else(|| TemplateValue::Str(String::new())),
                        (TemplateValue::List(items), TemplateValue::Int(position)) => {
                            match usize::try_from(*position).ok().and_then(|at| items.get(at)) {
                                Some(item) => item.clone(),
                                None => {
                                    return Err(fail(format!("index out of range: {position}")));
                                }
                            }
                        }
                        (other, _) => {
                            return Err(fail(format!("can't index item of type {}", other.kind())));
                        }
                    };
                }
                Ok(value)
            }
            "print" | "println" => {
                let mut out = String::new();
                for (position, argument) in arguments.iter().enumerate() {
                    let is_string = matches!(argument, TemplateValue::Str(_));
                    let previous_is_string =
                        position > 0 && matches!(arguments[position - 1], TemplateValue::Str(_));
                    if position > 0 && (name == "println" || (!is_string && !previous_is_string)) {
                        out.push(' ');
                    }
                    argument.print(&mut out);
                }
                if name == "println" {
                    out.push('\n');
                }
                Ok(TemplateValue::Str(out))
            }
            "printf" => {
                let Some(TemplateValue::Str(format)) = arguments.first() else {
                    return Err(fail("format must be a string".to_string()));
                };
                Ok(TemplateValue::Str(go_sprintf(format, &arguments[1..])))
            }
            "html" | "safeHtml" | "js" | "urlquery" => {
                let mut out = String::new();
                for argument in &arguments {
                    argument.print(&mut out);
                }
                Ok(TemplateValue::Str(if name == "html" {
                    out.replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                        .replace('"', "&#34;")
                        .replace('\'', "&#39;")
                } else {
                    out
                }))
            }
            "query" => {
                want(1)?;
                let TemplateValue::Str(expression) = &arguments[0] else {
                    return Err(fail("query needs a string".to_string()));
                };
                let Some(query) = self.query else {
                    return Err(fail("no query function available".to_string()));
                };
                let rows = query(expression).map_err(fail)?;
                Ok(TemplateValue::List(
                    rows.iter()
                        .map(|(labels, value)| {
                            TemplateValue::sample(
                                labels.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                                *value,
                            )
                        })
                        .collect(),
                ))
            }
            "first" => {
                want(1)?;
                match &arguments[0] {
                    TemplateValue::List(items) if !items.is_empty() => Ok(items[0].clone()),
                    TemplateValue::List(_) => Err(fail(
                        "first() called on vector with no elements".to_string(),
                    )),
                    other => Err(fail(format!("first() called on {}", other.kind()))),
                }
            }
            "label" => {
                want(2)?;
                let (TemplateValue::Str(label_name), TemplateValue::Map(sample)) =
                    (&arguments[0], &arguments[1])
                else {
                    return Err(fail("label needs a name and a sample".to_string()));
                };
                Ok(match sample.get("Labels") {
                    Some(TemplateValue::Map(labels)) => labels
                        .get(label_name)
                        .cloned()
                        .unwrap_or(TemplateValue::Str(String::new())),
                    _ => TemplateValue::Str(String::new()),
                })
            }
            "value" => {
                want(1)?;
                match &arguments[0] {
                    TemplateValue::Map(sample) => Ok(sample
                        .get("Value")
                        .cloned()
                        .unwrap_or(TemplateValue::Float(0.0))),
                    other => Err(fail(format!("value() called on {}", other.kind()))),
                }
            }
            "strvalue" => {
                want(1)?;
                match &arguments[0] {
                    TemplateValue::Map(sample) => match sample.get("Labels") {
                        Some(TemplateValue::Map(labels)) => Ok(labels
                            .get("__value__")
                            .cloned()
                            .unwrap_or(TemplateValue::Str(String::new()))),
                        _ => Ok(TemplateValue::Str(String::new())),
                    },
                    other => Err(fail(format!("strvalue() called on {}", other.kind()))),
                }
            }
            "sortByLabel" => {
                want(2)?;
                let (TemplateValue::Str(label_name), TemplateValue::List(items)) =
                    (&arguments[0], &arguments[1])
                else {
                    return Err(fail(
                        "sortByLabel needs a label name and a vector".to_string(),
                    ));
                };
                let mut items = items.clone();
                let key = |item: &TemplateValue| -> String {
                    if let TemplateValue::Map(sample) = item
                        && let Some(TemplateValue::Map(labels)) = sample.get("Labels")
                        && let Some(TemplateValue::Str(value)) = labels.get(label_name)
                    {
                        return value.clone();
                    }
                    String::new()
                };
                items.sort_by_key(key);
                Ok(TemplateValue::List(items))
            }
            "args" => {
                let mut map = BTreeMap::new();
                for (position, argument) in arguments.into_iter().enumerate() {
                    map.insert(format!("arg{position}"), argument);
                }
                Ok(TemplateValue::Map(map))
            }
            "reReplaceAll" => {
                want(3)?;
                let (
                    TemplateValue::Str(pattern),
                    TemplateValue::Str(replacement),
                    TemplateValue::Str(text),
                ) = (&arguments[0], &arguments[1], &arguments[2])
                else {
                    return Err(fail("reReplaceAll needs three strings".to_string()));
                };
                let expression =
                    regex::Regex::new(pattern).map_err(|error| fail(error.to_string()))?;
                Ok(TemplateValue::Str(
                    expression
                        .replace_all(text, replacement.as_str())
                        .into_owned(),
                ))
            }
            "match" => {
                want(2)?;
                let (TemplateValue::Str(pattern), TemplateValue::Str(text)) =
                    (&arguments[0], &arguments[1])
                else {
                    return Err(fail("match needs two strings".to_string()));
                };
                let expression =
                    regex::Regex::new(pattern).map_err(|error| fail(error.to_string()))?;
                Ok(TemplateValue::Bool(expression.is_match(text)))
            }
            "title" | "toUpper" | "toLower" | "stripPort" | "stripDomain" => {
                want(1)?;
                let TemplateValue::Str(text) = &arguments[0] else {
                    return Err(fail(format!("{name} needs a string")));
                };
                Ok(TemplateValue::Str(match name {
                    "toUpper" => text.to_uppercase(),
                    "toLower" => text.to_lowercase(),
                    "title" => title_case(text),
                    "stripPort" => strip_port(text),
                    _ => strip_domain(text),
                }))
            }
            "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
            | "humanizeTimestamp" | "toTime" | "toDuration" => {
                want(1)?;
                let value = convert_to_float(&arguments[0]).map_err(fail)?;
                Ok(TemplateValue::Str(match name {
                    "humanize" => humanize(value),
                    "humanize1024" => humanize_1024(value),
                    "humanizeDuration" | "toDuration" => humanize_duration(value),
                    "humanizePercentage" => {
                        format!("{}%", format_go_float(value * 100.0, 'g', Some(4)))
                    }
                    _ => humanize_timestamp(value),
                }))
            }
            "parseDuration" => {
                want(1)?;
                let TemplateValue::Str(text) = &arguments[0] else {
                    return Err(fail("parseDuration needs a string".to_string()));
                };
                let duration =
                    crate::config::parse_duration(text).map_err(|error| fail(error.to_string()))?;
                Ok(TemplateValue::Float(duration.as_secs_f64()))
            }
            "pathPrefix" | "externalURL" => Ok(TemplateValue::Str(String::new())),
            "graphLink" | "tableLink" => {
                want(1)?;
                let mut expression = String::new();
                arguments[0].print(&mut expression);
                let tab = if name == "graphLink" { 0 } else { 1 };
                Ok(TemplateValue::Str(format!(
                    "/graph?g0.expr={}&g0.tab={tab}",
                    percent_encode(&expression)
                )))
            }
            _ => Err(fail("function not supported".to_string())),
        }
    }
}

fn compare_values(
    left: &TemplateValue,
    right: &TemplateValue,
) -> Result<Option<std::cmp::Ordering>, String> {
    match (left, right) {
        (TemplateValue::Int(a), TemplateValue::Int(b)) => Ok(Some(a.cmp(b))),
        (TemplateValue::Float(a), TemplateValue::Float(b)) => Ok(a.partial_cmp(b)),
        (TemplateValue::Str(a), TemplateValue::Str(b)) => Ok(Some(a.cmp(b))),
        (TemplateValue::Bool(a), TemplateValue::Bool(b)) => Ok(Some(a.cmp(b))),
        (TemplateValue::Nil, TemplateValue::Nil) => Ok(Some(std::cmp::Ordering::Equal)),
        _ => Err("incompatible types for comparison".to_string()),
    }
}

/// Prometheus's `convertToFloat`: numbers, and strings that parse as floats.
fn convert_to_float(value: &TemplateValue) -> Result<f64, String> {
    match value {
        TemplateValue::Float(number) => Ok(*number),
        TemplateValue::Int(number) => Ok(*number as f64),
        TemplateValue::Str(text) => parse_go_float(text)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {text:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.kind())),
    }
}

fn parse_go_float(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => Some(if lower.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }),
        "nan" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Go's `strings.Title`: upper-cases the first letter of every word.
fn title_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_is_letter = false;
    for character in text.chars() {
        if !previous_is_letter && character.is_alphabetic() {
            out.extend(character.to_uppercase());
        } else {
            out.push(character);
        }
        previous_is_letter = character.is_alphanumeric() || character == '_' || character == '\'';
    }
    out
}

fn strip_port(text: &str) -> String {
    if let Some(rest) = text.strip_prefix('[')
        && let Some(end) = rest.find(']')
    {
        return rest[..end].to_string();
    }
    match text.rfind(':') {
        Some(colon) if text.matches(':').count() == 1 => text[..colon].to_string(),
        _ => text.to_string(),
    }
}

fn strip_domain(text: &str) -> String {
    let (host, port) = match text.rfind(':') {
        Some(colon) if text.matches(':').count() == 1 => (&text[..colon], &text[colon..]),
        _ => (text, ""),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return text.to_string();
    }
    let short = host.split('.').next().unwrap_or(host);
    format!("{short}{port}")
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

const SI_LARGE: [&str; 8] = ["k", "M", "G", "T", "P", "E", "Z", "Y"];
const SI_SMALL: [&str; 8] = ["m", "u", "n", "p", "f", "a", "z", "y"];

fn humanize(mut value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format_go_float(value, 'g', Some(4));
    }
    let mut prefix = "";
    if value.abs() >= 1.0 {
        for candidate in SI_LARGE {
            if value.abs() < 1000.0 {
                break;
            }
            prefix = candidate;
            value /= 1000.0;
        }
    } else {
        for candidate in SI_SMALL {
            if value.abs() >= 1.0 {
                break;
            }
            prefix = candidate;
            value *= 1000.0;
        }
    }
    format!("{}{prefix}", format_go_float(value, 'g', Some(4)))
}

fn humanize_1024(mut value: f64) -> String {
    if value.abs() <= 1.0 || !value.is_finite() {
        return format_go_float(value, 'g', Some(4));
    }
    let mut prefix = "";
    for candidate in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if value.abs() < 1024.0 {
            break;
        }
        prefix = candidate;
        value /= 1024.0;
    }
    format!("{}{prefix}", format_go_float(value, 'g', Some(4)))
}

fn humanize_duration(mut value: f64) -> String {
    if !value.is_finite() {
        return format_go_float(value, 'g', Some(4));
    }
    if value == 0.0 {
        return format!("{}s", format_go_float(value, 'g', Some(4)));
    }
    if value.abs() >= 1.0 {
        let sign = if value < 0.0 { "-" } else { "" };
        value = value.abs();
        let whole = value as i64;
        let seconds = whole % 60;
        let minutes = (whole / 60) % 60;
        let hours = (whole / 3600) % 24;
        let days = whole / 86_400;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_go_float(value, 'g', Some(4)));
    }
    let mut prefix = "";
    for candidate in SI_SMALL {
        if value.abs() >= 1.0 {
            break;
        }
        prefix = candidate;
        value *= 1000.0;
    }
    format!("{}{prefix}s", format_go_float(value, 'g', Some(4)))
}

/// Go's `time.Time.String()` in UTC for a Unix time in seconds.
fn humanize_timestamp(value: f64) -> String {
    if !value.is_finite() {
        return format_go_float(value, 'g', Some(4));
    }
    let nanos_total = (value * 1e9) as i64;
    let seconds_total = nanos_total.div_euclid(1_000_000_000);
    let nanos = nanos_total.rem_euclid(1_000_000_000);
    let days = seconds_total.div_euclid(86_400);
    let second_of_day = seconds_total.rem_euclid(86_400);
    let (year, month, day) = crate::model::civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60
    );
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Decimal digits and decimal-point position of `value` (finite, non-negative),
/// rounded to `precision` significant digits or shortest when `None`.
fn decimal_digits(value: f64, precision: Option<usize>) -> (String, i32) {
    if value == 0.0 {
        return (String::new(), 0);
    }
    let text = match precision {
        Some(precision) => format!("{:.*e}", precision.saturating_sub(1), value),
        None => format!("{value:e}"),
    };
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0').to_string();
    (digits, exponent + 1)
}

/// Go's `strconv.FormatFloat(value, verb, precision, 64)` for 'g', 'e', 'f'
/// (`precision` `None` is Go's -1, the shortest representation).
pub fn format_go_float(value: f64, verb: char, precision: Option<usize>) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let negative = value.is_sign_negative();
    let magnitude = value.abs();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    match verb {
        'f' => {
            let precision = precision.unwrap_or(6);
            let _ = write!(out, "{magnitude:.precision$}");
            if precision == 0 {
                // Rust and Go agree here; nothing to add.
            }
            out
        }
        'e' => {
            let (digits, point) = decimal_digits(magnitude, precision.map(|p| p + 1));
            let decimals = precision.unwrap_or(digits.len().saturating_sub(1));
            append_exponent_form(&mut out, &digits, point, decimals);
            out
        }
        _ => {
            let shortest = precision.is_none();
            let requested = match precision {
                Some(0) => 1,
                Some(precision) => precision,
                None => 0,
            };
            let (digits, point) = decimal_digits(magnitude, precision.map(|_| requested));
            let digit_count = digits.len() as i32;
            let mut exponent_precision = if shortest { 6 } else { requested as i32 };
            if !shortest && exponent_precision > digit_count && digit_count >= point {
                exponent_precision = digit_count;
            }
            let exponent = point - 1;
            if exponent < -4 || exponent >= exponent_precision {
                let mut shown = if shortest {
                    digit_count
                } else {
                    requested as i32
                };
                if shown > digit_count {
                    shown = digit_count;
                }
                append_exponent_form(&mut out, &digits, point, (shown - 1).max(0) as usize);
            } else {
                let mut shown = if shortest {
                    digit_count
                } else {
                    requested as i32
                };
                if shown > point {
                    shown = digit_count;
                }
                append_fixed_form(&mut out, &digits, point, (shown - point).max(0) as usize);
            }
            out
        }
    }
}

fn append_exponent_form(out: &mut String, digits: &str, point: i32, decimals: usize) {
    let bytes = digits.as_bytes();
    out.push(bytes.first().map_or('0', |byte| *byte as char));
    if decimals > 0 {
        out.push('.');
        for index in 1..=decimals {
            out.push(bytes.get(index).map_or('0', |byte| *byte as char));
        }
    }
    let exponent = if digits.is_empty() { 0 } else { point - 1 };
    let _ = write!(
        out,
        "e{}{:02}",
        if exponent < 0 { '-' } else { '+' },
        exponent.abs()
    );
}

fn append_fixed_form(out: &mut String, digits: &str, point: i32, decimals: usize) {
    let bytes = digits.as_bytes();
    if point > 0 {
        for index in 0..point as usize {
            out.push(bytes.get(index).map_or('0', |byte| *byte as char));
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for index in 0..decimals as i32 {
            let position = point + index;
            let digit = if position < 0 {
                '0'
            } else {
                bytes
                    .get(position as usize)
                    .map_or('0', |byte| *byte as char)
            };
            out.push(digit);
        }
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q %x %%`
/// with width and precision.
fn go_sprintf(format: &str, arguments: &[TemplateValue]) -> String {
    let mut out = String::new();
    let mut characters = format.chars().peekable();
    let mut next_argument = 0usize;
    while let Some(character) = characters.next() {
        if character != '%' {
            out.push(character);
            continue;
        }
        let mut flags = String::new();
        while let Some(&flag) = characters.peek() {
            if matches!(flag, '-' | '+' | ' ' | '0' | '#') {
                flags.push(flag);
                characters.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&digit) = characters.peek() {
            if digit.is_ascii_digit() {
                width.push(digit);
                characters.next();
            } else {
                break;
            }
        }
        let mut precision: Option<usize> = None;
        if characters.peek() == Some(&'.') {
            characters.next();
            let mut digits = String::new();
            while let Some(&digit) = characters.peek() {
                if digit.is_ascii_digit() {
                    digits.push(digit);
                    characters.next();
                } else {
                    break;
                }
            }
            precision = Some(
                digits
                    .parse::<usize>()
                    .unwrap_or(0)
                    .min(MAX_FORMAT_PRECISION),
            );
        }
        let Some(verb) = characters.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(argument) = arguments.get(next_argument) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next_argument += 1;
        let rendered = match (verb, argument) {
            ('d', TemplateValue::Int(number)) => number.to_string(),
            ('f' | 'F' | 'e' | 'g', TemplateValue::Float(number)) => {
                format_go_float(*number, if verb == 'F' { 'f' } else { verb }, precision)
            }
            ('f' | 'F' | 'e' | 'g', TemplateValue::Int(number)) => {
                format!("%!{verb}(int={number})")
            }
            ('s' | 'v', TemplateValue::Str(text)) => match precision {
                Some(limit) => text.chars().take(limit).collect(),
                None => text.clone(),
            },
            ('v', other) => other.to_display(),
            ('q', TemplateValue::Str(text)) => format!("{text:?}"),
            ('x', TemplateValue::Int(number)) => format!("{number:x}"),
            ('x', TemplateValue::Str(text)) => {
                text.bytes().map(|byte| format!("{byte:02x}")).collect()
            }
            ('t', TemplateValue::Bool(value)) => value.to_string(),
            ('d', TemplateValue::Float(number)) => {
                format!("%!d(float64={})", format_go_float(*number, 'g', None))
            }
            ('s', other) => format!("%!s({}={})", go_type_name(other), other.to_display()),
            (verb, other) => format!("%!{verb}({}={})", go_type_name(other), other.to_display()),
        };
        let width: usize = width.parse::<usize>().unwrap_or(0).min(MAX_FORMAT_WIDTH);
        let length = rendered.chars().count();
        if length < width {
            let padding = width - length;
            if flags.contains('-') {
                out.push_str(&rendered);
                out.extend(std::iter::repeat_n(' ', padding));
            } else if flags.contains('0') && !matches!(argument, TemplateValue::Str(_)) {
                let (sign, digits) = match rendered.strip_prefix('-') {
                    Some(rest) => ("-", rest),
                    None => ("", rendered.as_str()),
                };
                out.push_str(sign);
                out.extend(std::iter::repeat_n('0', padding));
                out.push_str(digits);
            } else {
                out.extend(std::iter::repeat_n(' ', padding));
                out.push_str(&rendered);
            }
        } else {
            out.push_str(&rendered);
        }
    }
    if next_argument < arguments.len() {
        out.push_str("%!(EXTRA ");
        for (index, argument) in arguments[next_argument..].iter().enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}={}", go_type_name(argument), argument.to_display());
        }
        out.push(')');
    }
    out
}

fn go_type_name(value: &TemplateValue) -> &'static str {
    match value {
        TemplateValue::Nil => "<nil>",
        TemplateValue::Bool(_) => "bool",
        TemplateValue::Int(_) => "int",
        TemplateValue::Float(_) => "float64",
        TemplateValue::Str(_) => "string",
        TemplateValue::Map(_) => "map[string]string",
        TemplateValue::List(_) => "template.queryResult",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str, labels: &[(&str, &str)], value: f64) -> String {
        let data = alert_template_data(labels, &[("site", "north")], "http://guardia", value);
        let query = |expression: &str| -> Result<QueryRows, String> {
            match expression {
                "up" => Ok(vec![
                    (
                        vec![
                            ("instance".into(), "a:9100".into()),
                            ("job".into(), "node".into()),
                        ],
                        1.0,
                    ),
                    (
                        vec![
                            ("instance".into(), "b:9100".into()),
                            ("job".into(), "node".into()),
                        ],
                        0.0,
                    ),
                ]),
                "nothing" => Ok(Vec::new()),
                _ => Err("bad query".to_string()),
            }
        };
        match expand_alert_template("Test", text, &data, Some(&query)) {
            Ok(text) => text,
            Err(error) => format!("ERROR: {error}"),
        }
    }

    #[test]
    fn expands_like_prometheus() {
        let labels = [
            ("instance", "host:9100"),
            ("job", "node"),
            ("__name__", "up"),
        ];
        let cases: &[(&str, f64, &str)] = &[
            ("plain text", 1.0, "plain text"),
            ("{{ $labels.instance }} is down", 0.0, "host:9100 is down"),
            ("{{ .Labels.job }}", 0.0, "node"),
            ("{{ $labels.missing }}|", 0.0, "|"),
            ("{{ $externalLabels.site }}", 0.0, "north"),
            ("{{ $value }}", 42.0, "42"),
            ("{{ .Value }}", 0.5, "0.5"),
            ("{{ $value }}", 1234567.0, "1.234567e+06"),
            ("{{ $value }}", 100000.0, "100000"),
            ("{{ $value }}", 0.00001, "1e-05"),
            ("{{ $value | humanize }}", 1234567.0, "1.235M"),
            ("{{ humanize $value }}", 0.0012, "1.2m"),
            ("{{ $value | humanize }}", 0.0, "0"),
            ("{{ $value | humanize }}", 999.0, "999"),
            ("{{ $value | humanize1024 }}", 1048576.0, "1Mi"),
            ("{{ $value | humanize1024 }}", 1536.0, "1.5ki"),
            ("{{ $value | humanizeDuration }}", 90061.0, "1d 1h 1m 1s"),
            ("{{ $value | humanizeDuration }}", 3725.0, "1h 2m 5s"),
            ("{{ $value | humanizeDuration }}", 1.5, "1.5s"),
            ("{{ $value | humanizeDuration }}", 0.0035, "3.5ms"),
            ("{{ $value | humanizeDuration }}", 0.0, "0s"),
            ("{{ $value | humanizePercentage }}", 0.1234567, "12.35%"),
            (
                "{{ $value | humanizeTimestamp }}",
                1435065584.128,
                "2015-06-23 13:19:44.128 +0000 UTC",
            ),
            (
                "{{ $value | humanizeTimestamp }}",
                0.0,
                "1970-01-01 00:00:00 +0000 UTC",
            ),
            ("{{ printf \"%.2f\" $value }}", 1.23456, "1.23"),
            ("{{ printf \"%s=%d\" \"x\" 5 }}", 0.0, "x=5"),
            ("{{ printf \"%5.1f|\" $value }}", 2.25, "  2.2|"),
            ("{{ \"abc\" | toUpper }}", 0.0, "ABC"),
            ("{{ toLower \"ABC\" }}", 0.0, "abc"),
            ("{{ title \"hello world\" }}", 0.0, "Hello World"),
            (
                "{{ reReplaceAll \"(a+)b\" \"X$1\" \"aabab\" }}",
                0.0,
                "XaaXa",
            ),
            (
                "{{ if gt $value 80.0 }}high{{ else }}low{{ end }}",
                90.0,
                "high",
            ),
            (
                "{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}",
                60.0,
                "mid",
            ),
            ("{{ if eq $labels.job \"node\" }}yes{{ end }}", 0.0, "yes"),
            (
                "{{ if gt $value 80 }}x{{ end }}",
                90.0,
                "ERROR: template: __alert_Test:1: executing \"__alert_Test\" at <gt>: error calling gt: incompatible types for comparison",
            ),
            ("a {{- \" b \" -}} c", 0.0, "a b c"),
            (
                "{{ range $i, $s := query \"up\" }}{{ $i }}:{{ $s.Labels.instance }}={{ $s.Value }};{{ end }}",
                0.0,
                "0:a:9100=1;1:b:9100=0;",
            ),
            (
                "{{ range query \"up\" }}{{ .Labels.instance }} {{ end }}",
                0.0,
                "a:9100 b:9100 ",
            ),
            (
                "{{ with query \"up\" }}{{ . | first | value }}{{ end }}",
                0.0,
                "1",
            ),
            (
                "{{ query \"up\" | first | label \"instance\" }}",
                0.0,
                "a:9100",
            ),
            (
                "{{ with query \"nothing\" }}some{{ else }}none{{ end }}",
                0.0,
                "none",
            ),
            ("{{ len (query \"up\") }}", 0.0, "2"),
            ("{{ $x := 5 }}{{ $x }}", 0.0, "5"),
            ("{{/* a comment */}}ok", 0.0, "ok"),
            ("{{ index $labels \"job\" }}", 0.0, "node"),
            (
                "{{ and true \"x\" }} {{ or false \"\" }} {{ not false }}",
                0.0,
                "x  true",
            ),
            (
                "{{ query \"nothing\" | first }}",
                0.0,
                "ERROR: template: __alert_Test:1: executing \"__alert_Test\" at <first>: error calling first: first() called on vector with no elements",
            ),
            ("{{ $value | humanize }}", f64::INFINITY, "+Inf"),
            ("{{ $value | humanize }}", -1500.0, "-1.5k"),
        ];
        for (text, value, expected) in cases {
            assert_eq!(
                &expand(text, &labels, *value),
                expected,
                "template {text:?}"
            );
        }
    }

    #[test]
    fn parse_errors_are_reported_not_panics() {
        for source in [
            "{{",
            "{{ end }}",
            "{{ if }}",
            "{{ if true }}",
            "{{ unknownFunc }}",
            "{{ \"unterminated }}",
            "{{ else }}",
            "{{ (1 }}",
            "{{ 1) }}",
            "{{ $x : }}",
            "{{ . | }}",
            "{{- -}}",
            "{{/* }}",
            "{{ 1x }}",
            "{{ range }}{{ end }}",
        ] {
            assert!(
                Template::parse("t", source).is_err(),
                "{source:?} should not parse"
            );
        }
    }

    /// Deterministic stand-in for the `rule_template` fuzz target under
    /// `cargo test`: token soup and truncations of the fuzz seeds must
    /// parse or fail, and run or fail, without panicking.
    #[test]
    fn arbitrary_input_never_panics() {
        const PIECES: &[&str] = &[
            "{{",
            "}}",
            "{{-",
            "-}}",
            " ",
            "$labels",
            ".Labels",
            ".",
            "$value",
            "|",
            "(",
            ")",
            "if",
            "else",
            "end",
            "range",
            "with",
            "$x",
            ":=",
            "=",
            ",",
            "\"s\"",
            "`r`",
            "1",
            "2.5",
            "-3",
            "humanize",
            "printf",
            "\"%d %s %5.2f %q %x %v %\"",
            "query",
            "first",
            "value",
            "label",
            "eq",
            "gt",
            "and",
            "not",
            "len",
            "index",
            "reReplaceAll",
            "\"(\"",
            "title",
            "/*",
            "*/",
            "é",
            "\\",
            "\"",
            "humanizeTimestamp",
            "1e400",
            "nil",
            "true",
            "args",
            "sortByLabel",
            "match",
            "toUpper",
            "0x1f",
            "_",
            "\n",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let data = alert_template_data(&[("a", "b")], &[], "", 1.0);
        let query = |expression: &str| -> Result<QueryRows, String> {
            Ok(vec![(vec![("q".to_string(), expression.to_string())], 2.0)])
        };
        for _ in 0..20_000 {
            let length = (next() % 24) as usize;
            let mut text = String::new();
            for _ in 0..length {
                text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if let Ok(template) = Template::parse("t", &text) {
                let _ = template.execute(&data, Some(&query));
            }
        }
        let seeds =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/rule_template");
        // Only the checked-in seeds: a local fuzz run adds arbitrary bytes beside them.
        for entry in std::fs::read_dir(seeds).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_name().to_string_lossy().starts_with("seed-") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            assert!(
                Template::parse("t", &text).is_ok(),
                "seed must parse: {text}"
            );
            for cut in 0..text.len() {
                if let Some(prefix) = text.get(..cut)
                    && let Ok(template) = Template::parse("t", prefix)
                {
                    let _ = template.execute(&data, Some(&query));
                }
            }
        }
    }

    #[test]
    fn formats_floats_like_go() {
        let cases: &[(f64, char, Option<usize>, &str)] = &[
            (1.0, 'g', None, "1"),
            (1e21, 'g', None, "1e+21"),
            (123456.0, 'g', Some(4), "1.235e+05"),
            (100.0, 'g', Some(4), "100"),
            (0.001234, 'g', Some(4), "0.001234"),
            (1.5, 'g', Some(4), "1.5"),
            (-0.5, 'g', None, "-0.5"),
            (2.5, 'e', Some(2), "2.50e+00"),
            (f64::NAN, 'g', None, "NaN"),
        ];
        for (value, verb, precision, expected) in cases {
            assert_eq!(
                &format_go_float(*value, *verb, *precision),
                expected,
                "{value} {verb} {precision:?}"
            );
        }
    }
}
