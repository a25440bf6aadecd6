//! The SCIM filter language (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2), parsed into plain values.
//!
//! Beyond the grammar, it accepts what IdPs send: keywords in any case, values left unquoted
//! (`externalId eq jyoung`), and a sub-attribute after a value filter in a filter
//! (`emails[type eq "work"].value eq "a@b.c"`, read as `emails[type eq "work" and value eq "a@b.c"]`).
//! Errors name the character position. Nesting is bounded so hostile input cannot exhaust the stack.

use std::fmt;

/// Deeper nesting than this is refused; real filters use two or three levels.
const MAX_DEPTH: usize = 32;
/// Longer filters are refused before parsing.
pub const MAX_LENGTH: usize = 8 * 1024;
/// More comparisons than this are refused: IdPs send one or two, and each costs a scan of the
/// workspace's values.
pub const MAX_TERMS: usize = 16;

/// `[urn:]name[.sub]`, as written (names are resolved against the schema later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    String(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Present(AttrPath),
    /// `attr[filter]`: some value of the multi-valued `attr` matches `filter`, whose paths name
    /// sub-attributes of `attr`.
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// A PATCH operation's `path`: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`emails[type eq "work"].value`).
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

pub fn parse_filter(input: &str) -> Result<Filter, SyntaxError> {
    let mut parser = Parser::new(input)?;
    let filter = parser.or(0)?;
    parser.expect_end()?;
    Ok(filter)
}

pub fn parse_path(input: &str) -> Result<PatchPath, SyntaxError> {
    let mut parser = Parser::new(input)?;
    let (attr, at) = parser.attr_path()?;
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if parser.eat(&Token::OpenBracket) {
        if path.attr.sub.is_some() {
            return Err(parser.error_at(
                at,
                "a value filter follows an attribute, not a sub-attribute",
            ));
        }
        path.filter = Some(parser.or(1)?);
        parser.expect(&Token::CloseBracket, "]")?;
        path.sub = parser.sub_attribute()?;
    }
    parser.expect_end()?;
    Ok(path)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    /// `.name` straight after `]`.
    SubAttr(String),
    Quoted(String),
    Word(String),
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    end: usize,
    /// Inside `attr[...]`, where another value filter may not start.
    in_value_filter: bool,
    /// Comparisons (`pr` included) read so far.
    terms: usize,
}

impl Parser {
    fn new(input: &str) -> Result<Parser, SyntaxError> {
        if input.len() > MAX_LENGTH {
            return Err(SyntaxError {
                position: MAX_LENGTH,
                message: format!("longer than {MAX_LENGTH} bytes"),
            });
        }
        Ok(Parser {
            tokens: tokenize(input)?,
            next: 0,
            end: input.chars().count(),
            in_value_filter: false,
            terms: 0,
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, token)| token)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.next)
            .map_or(self.end, |(position, _)| *position)
    }

    fn error_at(&self, position: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            position,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        self.error_at(self.position(), message)
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &Token, shown: &str) -> Result<(), SyntaxError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(format!("expected {shown}")))
        }
    }

    fn expect_end(&self) -> Result<(), SyntaxError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("expected the end of the expression, or and/or")),
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(word) => {
                self.next += 1;
                true
            }
            _ => false,
        }
    }

    fn or(&mut self, depth: usize) -> Result<Filter, SyntaxError> {
        let mut filter = self.and(depth)?;
        while self.keyword("or") {
            filter = Filter::Or(Box::new(filter), Box::new(self.and(depth)?));
        }
        Ok(filter)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, SyntaxError> {
        let mut filter = self.unary(depth)?;
        while self.keyword("and") {
            filter = Filter::And(Box::new(filter), Box::new(self.unary(depth)?));
        }
        Ok(filter)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format!("nested more than {MAX_DEPTH} levels deep")));
        }
        let is_not = matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case("not"))
            && self.tokens.get(self.next + 1).map(|(_, t)| t) == Some(&Token::OpenParen);
        if is_not {
            self.next += 2;
            let inner = self.or(depth + 1)?;
            self.expect(&Token::CloseParen, ")")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.eat(&Token::OpenParen) {
            let inner = self.or(depth + 1)?;
            self.expect(&Token::CloseParen, ")")?;
            return Ok(inner);
        }
        self.attribute_expression(depth)
    }

    fn attribute_expression(&mut self, depth: usize) -> Result<Filter, SyntaxError> {
        let (attr, at) = self.attr_path()?;
        if self.eat(&Token::OpenBracket) {
            if attr.sub.is_some() {
                return Err(self.error_at(
                    at,
                    "a value filter follows an attribute, not a sub-attribute",
                ));
            }
            if self.in_value_filter {
                return Err(self.error_at(at, "value filters cannot be nested"));
            }
            self.in_value_filter = true;
            let inner = self.or(depth + 1)?;
            self.in_value_filter = false;
            self.expect(&Token::CloseBracket, "]")?;
            let inner = match self.sub_attribute()? {
                // `emails[type eq "work"].value eq "x"`: the comparison joins the value filter.
                Some(sub) => {
                    let path = AttrPath {
                        urn: None,
                        name: sub,
                        sub: None,
                    };
                    Filter::And(Box::new(inner), Box::new(self.comparison(path)?))
                }
                None => inner,
            };
            return Ok(Filter::ValuePath {
                attr,
                filter: Box::new(inner),
            });
        }
        self.comparison(attr)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, SyntaxError> {
        let at = self.position();
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error_at(at, format!("more than {MAX_TERMS} comparisons")));
        }
        let op = match self.peek() {
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("pr") => {
                self.next += 1;
                return Ok(Filter::Present(path));
            }
            Some(Token::Word(word)) => CompareOp::parse(word),
            _ => None,
        };
        let Some(op) = op else {
            return Err(self.error_at(at, "expected an operator: eq ne co sw ew gt ge lt le pr"));
        };
        self.next += 1;
        let value = match self.peek().cloned() {
            Some(Token::Quoted(text)) => CompValue::String(text),
            Some(Token::Word(word)) => match word.as_str() {
                "true" => CompValue::Bool(true),
                "false" => CompValue::Bool(false),
                "null" => CompValue::Null,
                _ => match word.parse::<f64>() {
                    Ok(number)
                        if number.is_finite()
                            && word.starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
                    {
                        CompValue::Number(number)
                    }
                    // Entra sends some values unquoted: `externalId eq jyoung`.
                    _ => CompValue::String(word),
                },
            },
            _ => return Err(self.error("expected a value")),
        };
        self.next += 1;
        if matches!(value, CompValue::Null) && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Err(self.error_at(at, "null can only be compared with eq or ne"));
        }
        Ok(Filter::Compare { path, op, value })
    }

    fn attr_path(&mut self) -> Result<(AttrPath, usize), SyntaxError> {
        let at = self.position();
        match self.peek().cloned() {
            Some(Token::Word(word)) => {
                self.next += 1;
                Ok((
                    split_attr_path(&word).ok_or_else(|| {
                        self.error_at(at, format!("{word:?} is not an attribute path"))
                    })?,
                    at,
                ))
            }
            _ => Err(self.error("expected an attribute name")),
        }
    }

    fn sub_attribute(&mut self) -> Result<Option<String>, SyntaxError> {
        match self.peek().cloned() {
            Some(Token::SubAttr(name)) => {
                self.next += 1;
                if is_attr_name(&name) {
                    Ok(Some(name))
                } else {
                    Err(self.error(format!("{name:?} is not a sub-attribute name")))
                }
            }
            _ => Ok(None),
        }
    }
}

/// `urn:...:name.sub`: the URN is everything before the last colon (URNs hold dots, as in `2.0`).
fn split_attr_path(word: &str) -> Option<AttrPath> {
    let (urn, rest) = match word.rfind(':') {
        Some(colon) => (Some(word[..colon].to_owned()), &word[colon + 1..]),
        None => (None, word),
    };
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub.to_owned())),
        None => (rest, None),
    };
    let valid = is_attr_name(name)
        && sub.as_deref().is_none_or(is_attr_name)
        && urn
            .as_deref()
            .is_none_or(|u| u.to_ascii_lowercase().starts_with("urn:"));
    valid.then(|| AttrPath {
        urn,
        name: name.to_owned(),
        sub,
    })
}

/// ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA; `$ref` is the one exception.
fn is_attr_name(name: &str) -> bool {
    name == "$ref"
        || (name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, SyntaxError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push((start, Token::OpenParen));
                i += 1;
            }
            ')' => {
                tokens.push((start, Token::CloseParen));
                i += 1;
            }
            '[' => {
                tokens.push((start, Token::OpenBracket));
                i += 1;
            }
            ']' => {
                tokens.push((start, Token::CloseBracket));
                i += 1;
                if chars.get(i) == Some(&'.') {
                    i += 1;
                    let name_start = i;
                    while i < chars.len() && !is_delimiter(chars[i]) {
                        i += 1;
                    }
                    tokens.push((
                        name_start,
                        Token::SubAttr(chars[name_start..i].iter().collect()),
                    ));
                }
            }
            '"' => {
                let (text, next) = quoted(&chars, i)?;
                tokens.push((start, Token::Quoted(text)));
                i = next;
            }
            _ => {
                while i < chars.len() && !is_delimiter(chars[i]) {
                    i += 1;
                }
                tokens.push((start, Token::Word(chars[start..i].iter().collect())));
            }
        }
    }
    Ok(tokens)
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

/// A JSON string starting at `chars[start]`; returns it and the index after the closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), SyntaxError> {
    let mut i = start + 1;
    let mut raw = String::from('"');
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                raw.push('\\');
                raw.push(chars[i + 1]);
                i += 2;
            }
            '"' => {
                raw.push('"');
                let text = serde_json::from_str::<String>(&raw).map_err(|_| SyntaxError {
                    position: start,
                    message: "invalid escape in string".to_owned(),
                })?;
                return Ok((text, i + 1));
            }
            c => {
                raw.push(c);
                i += 1;
            }
        }
    }
    Err(SyntaxError {
        position: start,
        message: "unterminated string".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> AttrPath {
        split_attr_path(name).unwrap()
    }

    fn eq(name: &str, value: &str) -> Filter {
        Filter::Compare {
            path: path(name),
            op: CompareOp::Eq,
            value: CompValue::String(value.into()),
        }
    }

    #[test]
    fn rfc_7644_examples_parse() {
        let examples = [
            r#"userName Eq "john""#,
            r#"Username eq "john""#,
            r#"name.familyName co "O'Malley""#,
            r#"userName sw "J""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            "title pr",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ];
        for example in examples {
            assert!(
                parse_filter(example).is_ok(),
                "{example}: {:?}",
                parse_filter(example)
            );
        }
    }

    #[test]
    fn precedence_and_structure() {
        let filter = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
        assert_eq!(
            filter,
            Filter::Or(
                Box::new(eq("a", "1")),
                Box::new(Filter::And(Box::new(eq("b", "2")), Box::new(eq("c", "3"))))
            )
        );
        let filter = parse_filter(r#"not (a eq "1")"#).unwrap();
        assert_eq!(filter, Filter::Not(Box::new(eq("a", "1"))));
        let filter = parse_filter(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"7\"",
        )
        .unwrap();
        let Filter::Compare { path, .. } = filter else {
            panic!()
        };
        assert_eq!(
            path.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(
            (path.name.as_str(), path.sub.as_deref()),
            ("manager", Some("value"))
        );
    }

    #[test]
    fn idp_quirks_are_accepted() {
        assert_eq!(
            parse_filter("externalId eq jyoung").unwrap(),
            eq("externalId", "jyoung")
        );
        assert_eq!(
            parse_filter(r#"emails[type eq "work"].value eq "a@b.c""#).unwrap(),
            Filter::ValuePath {
                attr: path("emails"),
                filter: Box::new(Filter::And(
                    Box::new(eq("type", "work")),
                    Box::new(eq("value", "a@b.c"))
                )),
            }
        );
        assert_eq!(
            parse_filter(r#"active EQ true AND userName eq "x""#).unwrap(),
            Filter::And(
                Box::new(Filter::Compare {
                    path: path("active"),
                    op: CompareOp::Eq,
                    value: CompValue::Bool(true)
                }),
                Box::new(eq("userName", "x"))
            )
        );
        assert!(
            matches!(parse_filter("x gt 10").unwrap(), Filter::Compare { value: CompValue::Number(n), .. } if n == 10.0)
        );
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            ("userName eq", 11, "expected a value"),
            ("userName xx \"a\"", 9, "expected an operator"),
            ("userName eq \"a", 12, "unterminated string"),
            ("(userName eq \"a\"", 16, "expected )"),
            ("userName eq \"a\" userName", 16, "expected the end"),
            ("emails[type eq \"work\"", 21, "expected ]"),
            ("", 0, "expected an attribute name"),
            ("1abc eq \"x\"", 0, "is not an attribute path"),
            ("title gt null", 6, "null can only"),
            (
                "emails[type eq \"w\" and ims[type eq \"x\"]]",
                23,
                "cannot be nested",
            ),
        ];
        for (input, position, message) in cases {
            let error = parse_filter(input).unwrap_err();
            assert_eq!(error.position, position, "{input}: {error}");
            assert!(error.message.contains(message), "{input}: {error}");
        }
    }

    #[test]
    fn patch_paths() {
        let parsed = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(parsed.attr, path("emails"));
        assert_eq!(parsed.filter, Some(eq("type", "work")));
        assert_eq!(parsed.sub.as_deref(), Some("value"));
        let parsed =
            parse_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).unwrap();
        assert_eq!(parsed.sub, None);
        let parsed =
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager")
                .unwrap();
        assert_eq!(
            (parsed.attr.name.as_str(), parsed.filter),
            ("manager", None)
        );
        assert_eq!(
            parse_path("name.givenName").unwrap().attr.sub.as_deref(),
            Some("givenName")
        );
        for bad in [
            "",
            "emails[",
            "emails[type eq \"work\"] x",
            "name.givenName[type eq \"x\"]",
            "emails[type eq \"w\"].",
            "a b",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_input_is_refused_not_crashed() {
        let deep = format!("{}a pr{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_filter(&deep[..MAX_LENGTH.min(deep.len())]).is_err());
        let nested_not = format!("{}a pr{}", "not (".repeat(100), ")".repeat(100));
        assert!(
            parse_filter(&nested_not)
                .unwrap_err()
                .message
                .contains("nested")
        );
        assert!(parse_filter(&"a".repeat(MAX_LENGTH + 1)).is_err());
        let terms = |n: usize| vec!["a pr"; n].join(" or ");
        assert!(parse_filter(&terms(MAX_TERMS)).is_ok());
        assert!(
            parse_filter(&terms(MAX_TERMS + 1))
                .unwrap_err()
                .message
                .contains("comparisons")
        );
        // Every prefix of a valid filter either parses or errors, never panics.
        let filter = r#"userType eq "Employee" and not (emails[type eq "work" and value co "@x"].display pr or é eq "\u00e9")"#;
        for end in (0..=filter.len()).filter(|end| filter.is_char_boundary(*end)) {
            let _ = parse_filter(&filter[..end]);
            let _ = parse_path(&filter[..end]);
        }
    }
}

/// Random inputs built from the grammar's own pieces: whatever comes out, the parsers answer
/// with a value or an error, never a panic.
#[cfg(test)]
mod random_inputs {
    use super::*;

    const PIECES: &[&str] = &[
        "userName",
        "emails",
        "name.givenName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        ".value",
        "value",
        " eq ",
        " co ",
        " pr",
        " and ",
        " or ",
        "not ",
        "(",
        ")",
        "[",
        "]",
        "\"",
        "\"x\"",
        "\\",
        "\"\\u00e9\"",
        "true",
        "null",
        "12.5",
        "-",
        "$ref",
        " ",
        "é",
        ":",
        ".",
        "\u{0}",
        "]..",
        "[[",
        "\"\\\"",
    ];

    /// xorshift64: deterministic, so a failure reproduces.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn no_input_makes_a_parser_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let length = next(&mut state) % 12;
            let input: String = (0..length)
                .map(|_| PIECES[(next(&mut state) % PIECES.len() as u64) as usize])
                .collect();
            let _ = parse_filter(&input);
            let _ = parse_path(&input);
        }
    }
}
