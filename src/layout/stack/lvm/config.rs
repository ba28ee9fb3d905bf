//! LVM's configuration text format, the one its metadata areas and `vgcfgbackup` files are
//! written in (libdm/libdm-config.c): `# comments`, `key = value`, `name { ... }` sections;
//! values are integers, floats, quoted strings (`\"` and `\\` escaped) and `[ ... ]`
//! arrays of those. Parsed into an ordered tree and written back in LVM's own layout.

use super::super::StackError;

/// The largest text we parse (LVM's metadata areas hold far less).
pub const MAX_INPUT: usize = 16 << 20;
/// How deep sections may nest (VG metadata goes four deep: VG, logical_volumes, LV, segment).
pub const MAX_DEPTH: usize = 32;

/// One scalar or array value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    /// A float, kept as written (LVM metadata has none; lvm.conf may).
    Float(String),
    Str(String),
    Array(Vec<Value>),
}

/// A section's member: a value or a nested section.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Value(Value),
    Section(Section),
}

/// A section: its members in file order (LVM does not require an order, but keeping it
/// makes the rewritten text diff cleanly against the original).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    pub entries: Vec<(String, Node)>,
}

impl Section {
    /// The member named `key` (the first one, as LVM's lookup does).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n)
    }

    /// The sub-section at a `/`-separated path.
    pub fn section(&self, path: &str) -> Option<&Section> {
        path.split('/').try_fold(self, |s, k| match s.get(k)? {
            Node::Section(sub) => Some(sub),
            Node::Value(_) => None,
        })
    }

    /// The sub-section at a `/`-separated path, for changing it.
    pub fn section_mut(&mut self, path: &str) -> Option<&mut Section> {
        path.split('/').try_fold(self, |s, k| match s.get_mut(k)? {
            Node::Section(sub) => Some(sub),
            Node::Value(_) => None,
        })
    }

    /// The value of a member.
    pub fn value(&self, key: &str) -> Option<&Value> {
        match self.get(key)? {
            Node::Value(v) => Some(v),
            Node::Section(_) => None,
        }
    }

    /// An integer member.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.value(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A string member.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.value(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An array-of-strings member (`status`, `tags`); a missing one is empty, a member
    /// that is not an array of strings is `None`.
    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        match self.value(key) {
            None => Some(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            Some(_) => None,
        }
    }

    /// The sub-sections, in order, with their names.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.entries.iter().filter_map(|(k, n)| match n {
            Node::Section(s) => Some((k.as_str(), s)),
            Node::Value(_) => None,
        })
    }

    /// Sets a member's value: replaces it in place if present, else appends it.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.get_mut(key) {
            Some(n) => *n = Node::Value(value),
            None => self.entries.push((key.to_string(), Node::Value(value))),
        }
    }

    /// The tree as text LVM reads back (tab-indented, as LVM writes it).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        write_section(self, 0, &mut out);
        out
    }
}

fn write_section(s: &Section, depth: usize, out: &mut String) {
    for (k, n) in &s.entries {
        out.extend(std::iter::repeat_n('\t', depth));
        out.push_str(k);
        match n {
            Node::Value(v) => {
                out.push_str(" = ");
                write_value(v, out);
                out.push('\n');
            }
            Node::Section(sub) => {
                out.push_str(" {\n");
                write_section(sub, depth + 1, out);
                out.extend(std::iter::repeat_n('\t', depth));
                out.push_str("}\n");
            }
        }
    }
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(f),
        Value::Str(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(e, out);
            }
            out.push(']');
        }
    }
}

/// Parses a whole text into its top-level section.
pub fn parse(text: &str) -> Result<Section, StackError> {
    if text.len() > MAX_INPUT {
        return Err(StackError::Bad(format!(
            "LVM config text of {} bytes is larger than the {MAX_INPUT} accepted",
            text.len()
        )));
    }
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
        line: 1,
    };
    let root = p.section(0)?;
    match p.peek()? {
        None => Ok(root),
        Some(c) => Err(p.err(&format!("unexpected {:?}", c as char))),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    line: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> StackError {
        StackError::Bad(format!("LVM config text line {}: {what}", self.line))
    }

    /// The next significant byte, skipping blanks and comments; `None` at the end.
    fn peek(&mut self) -> Result<Option<u8>, StackError> {
        while let Some(&c) = self.s.get(self.at) {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                b'#' => {
                    while self.s.get(self.at).is_some_and(|&c| c != b'\n') {
                        self.at += 1;
                    }
                    continue;
                }
                _ => return Ok(Some(c)),
            }
            self.at += 1;
        }
        Ok(None)
    }

    fn expect(&mut self, want: u8) -> Result<(), StackError> {
        match self.peek()? {
            Some(c) if c == want => {
                self.at += 1;
                Ok(())
            }
            Some(c) => Err(self.err(&format!(
                "expected {:?}, found {:?}",
                want as char, c as char
            ))),
            None => Err(self.err(&format!("expected {:?}, found the end", want as char))),
        }
    }

    /// Members up to a `}` (depth > 0) or the end (depth 0).
    fn section(&mut self, depth: usize) -> Result<Section, StackError> {
        if depth > MAX_DEPTH {
            return Err(self.err(&format!("sections nested deeper than {MAX_DEPTH}")));
        }
        let mut sec = Section::default();
        loop {
            match self.peek()? {
                None if depth == 0 => return Ok(sec),
                None => return Err(self.err("section not closed before the end")),
                Some(b'}') if depth > 0 => {
                    self.at += 1;
                    return Ok(sec);
                }
                Some(_) => {
                    let key = self.ident()?;
                    let node = match self.peek()? {
                        Some(b'{') => {
                            self.at += 1;
                            Node::Section(self.section(depth + 1)?)
                        }
                        _ => {
                            self.expect(b'=')?;
                            Node::Value(self.value(true)?)
                        }
                    };
                    sec.entries.push((key, node));
                }
            }
        }
    }

    /// A key or section name (libdm-config.c accepts these characters in `_type`).
    fn ident(&mut self) -> Result<String, StackError> {
        let start = self.at;
        while self.s.get(self.at).is_some_and(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/' | b'+' | b'@' | b'%')
        }) {
            self.at += 1;
        }
        if self.at == start {
            let c = self.s.get(self.at).copied().unwrap_or(b'?');
            return Err(self.err(&format!("expected a name, found {:?}", c as char)));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn value(&mut self, array_ok: bool) -> Result<Value, StackError> {
        match self.peek()? {
            Some(b'[') if array_ok => self.array(),
            Some(b'"') => self.string(),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(c) => Err(self.err(&format!("expected a value, found {:?}", c as char))),
            None => Err(self.err("expected a value, found the end")),
        }
    }

    fn array(&mut self) -> Result<Value, StackError> {
        self.at += 1;
        let mut items = Vec::new();
        if self.peek()? == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(false)?);
            match self.peek()? {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("array not closed by ']'")),
            }
        }
    }

    fn string(&mut self) -> Result<Value, StackError> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.at).copied() {
                None => return Err(self.err("string not closed before the end")),
                Some(b'"') => break,
                Some(b'\\') => {
                    self.at += 1;
                    match self.s.get(self.at).copied() {
                        Some(c) => out.push(c),
                        None => return Err(self.err("string not closed before the end")),
                    }
                }
                Some(c) => {
                    if c == b'\n' {
                        self.line += 1;
                    }
                    out.push(c);
                }
            }
            self.at += 1;
        }
        self.at += 1;
        String::from_utf8(out)
            .map(Value::Str)
            .map_err(|_| self.err("string is not UTF-8"))
    }

    fn number(&mut self) -> Result<Value, StackError> {
        let start = self.at;
        self.at += 1;
        while self
            .s
            .get(self.at)
            .is_some_and(|&c| c.is_ascii_digit() || c == b'.')
        {
            self.at += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
        if text.contains('.') {
            return match text.parse::<f64>() {
                Ok(_) => Ok(Value::Float(text)),
                Err(_) => Err(self.err(&format!("bad number {text:?}"))),
            };
        }
        text.parse::<i64>()
            .map(Value::Int)
            .map_err(|_| self.err(&format!("bad integer {text:?}")))
    }
}
