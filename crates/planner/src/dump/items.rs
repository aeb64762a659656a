//! Cuts a JSON dump into its objects without parsing them: each item of a List (or of a
//! top-level array, or each concatenated object) becomes a byte slice that serde_json then
//! parses from memory, which is several times faster than parsing through `io::Read`.
//!
//! ```text
//! reader ─► 1 MiB reads into a buffer ─► find each item's end (strings skipped with memchr,
//!           braces counted) ─► copy it into a batch (about 4 MiB) ─► emit(batch)
//! {"kind": "List", "items": [ A, B, ... ], "metadata": ...}
//!      └─ items emitted one by one; the rest, with `"items": []`, emitted last as one object
//! ```
//!
//! Memory is bounded by the buffer, the batches in flight and the largest single object. The
//! scanner only finds where objects end: what is inside them is for the parser to judge, and
//! each item carries the line and column it starts at so the parser's errors point into the
//! file.

use std::io::{self, Read};

/// One object, as a range of its batch's bytes, with where it starts in the file. An empty
/// range stands for a List whose items follow (it only takes its place in the count).
#[derive(Clone, Copy, Debug)]
pub struct Item {
    /// Start in the batch's bytes.
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// Line of its first byte in the file, from 1.
    pub line: usize,
    /// Column of its first byte, from 1.
    pub column: usize,
}

/// Objects in file order, their bytes together.
#[derive(Debug, Default)]
pub struct Batch {
    /// The objects' bytes.
    pub bytes: Vec<u8>,
    /// The objects.
    pub items: Vec<Item>,
}

/// Why the dump could not be cut into objects.
#[derive(Debug)]
pub enum ScanError {
    /// Reading failed.
    Io(io::Error),
    /// The JSON's structure is broken here.
    Syntax {
        /// What was expected.
        message: String,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
    },
}

const READ: usize = 1 << 20;
const BATCH: usize = 4 << 20;

struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`.
    base: u64,
    pos: usize,
    eof: bool,
    /// Absolute offset from which bytes must be kept (an object being cut).
    mark: Option<u64>,
    /// Newlines are counted up to this absolute offset.
    counted: u64,
    line: usize,
    /// Absolute offset of the current line's first byte.
    line_start: u64,
    batch: Batch,
}

/// Cuts the JSON read from `reader` into objects, handing them over in batches; stops early
/// when `emit` returns false.
///
/// # Errors
/// A read failure, or a structure that does not close.
pub fn scan(reader: impl Read, mut emit: impl FnMut(Batch) -> bool) -> Result<(), ScanError> {
    let mut s = Scanner {
        reader,
        buf: Vec::with_capacity(2 * READ),
        base: 0,
        pos: 0,
        eof: false,
        mark: None,
        counted: 0,
        line: 1,
        line_start: 0,
        batch: Batch::default(),
    };
    loop {
        s.skip_ws()?;
        match s.peek()? {
            None => break,
            Some(b'[') => {
                s.pos += 1;
                if !s.array(&mut emit)? {
                    return Ok(());
                }
            }
            Some(b'{') => {
                if !s.top_object(&mut emit)? {
                    return Ok(());
                }
            }
            Some(_) => return Err(s.syntax("expected `{` or `[` (a JSON object or array)")),
        }
    }
    if !s.batch.items.is_empty() {
        emit(std::mem::take(&mut s.batch));
    }
    Ok(())
}

impl<R: Read> Scanner<R> {
    fn abs(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn count_lines_to(&mut self, abs: u64) {
        if abs <= self.counted {
            return;
        }
        let from = usize::try_from(self.counted - self.base).unwrap_or(0);
        let to = usize::try_from(abs - self.base).unwrap_or(from);
        for i in memchr::memchr_iter(b'\n', &self.buf[from..to]) {
            self.line += 1;
            self.line_start = self.base + (from + i + 1) as u64;
        }
        self.counted = abs;
    }

    fn here(&mut self) -> (usize, usize) {
        self.count_lines_to(self.abs());
        let column = usize::try_from(self.abs() - self.line_start).unwrap_or(0) + 1;
        (self.line, column)
    }

    fn syntax(&mut self, message: &str) -> ScanError {
        let (line, column) = self.here();
        ScanError::Syntax {
            message: message.to_owned(),
            line,
            column,
        }
    }

    /// Reads more; false at the end of the input.
    fn fill(&mut self) -> Result<bool, ScanError> {
        if self.eof {
            return Ok(false);
        }
        let keep = self.mark.unwrap_or_else(|| self.abs()).min(self.abs());
        self.count_lines_to(keep);
        let drop = usize::try_from(keep - self.base).unwrap_or(0);
        if drop > 0 {
            self.buf.drain(..drop);
            self.base += drop as u64;
            self.pos -= drop;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(ScanError::Io(e));
                }
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    fn peek(&mut self) -> Result<Option<u8>, ScanError> {
        while self.pos >= self.buf.len() {
            if !self.fill()? {
                return Ok(None);
            }
        }
        Ok(Some(self.buf[self.pos]))
    }

    fn skip_ws(&mut self) -> Result<(), ScanError> {
        loop {
            match self.buf[self.pos..]
                .iter()
                .position(|b| !b.is_ascii_whitespace())
            {
                Some(i) => {
                    self.pos += i;
                    return Ok(());
                }
                None => {
                    self.pos = self.buf.len();
                    if !self.fill()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), ScanError> {
        if self.peek()? == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(what))
        }
    }

    fn unclosed(&mut self, start: u64, what: &str) -> ScanError {
        self.count_lines_to(start);
        let column = usize::try_from(start - self.line_start).unwrap_or(0) + 1;
        ScanError::Syntax {
            message: format!("the dump ends inside the {what} that starts here"),
            line: self.line,
            column,
        }
    }

    /// From just after an opening `"` to just after its closing one.
    fn skip_string_body(&mut self, start: u64) -> Result<(), ScanError> {
        loop {
            match memchr::memchr2(b'"', b'\\', &self.buf[self.pos..]) {
                Some(i) if self.buf[self.pos + i] == b'"' => {
                    self.pos += i + 1;
                    return Ok(());
                }
                Some(i) => {
                    self.pos += i;
                    while self.buf.len() < self.pos + 2 {
                        if !self.fill()? {
                            return Err(self.unclosed(start, "string"));
                        }
                    }
                    self.pos += 2;
                }
                None => {
                    self.pos = self.buf.len();
                    if !self.fill()? {
                        return Err(self.unclosed(start, "string"));
                    }
                }
            }
        }
    }

    /// Skips the value that starts at `pos`.
    fn skip_value(&mut self) -> Result<(), ScanError> {
        let start = self.abs();
        match self.peek()? {
            None => Err(self.syntax("expected a value")),
            Some(b'"') => {
                self.pos += 1;
                self.skip_string_body(start)
            }
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                let mut depth = 1usize;
                loop {
                    match memchr::memchr3(b'"', open, close, &self.buf[self.pos..]) {
                        Some(i) => {
                            let b = self.buf[self.pos + i];
                            self.pos += i + 1;
                            if b == b'"' {
                                self.skip_string_body(self.abs() - 1)?;
                            } else if b == open {
                                depth += 1;
                            } else {
                                depth -= 1;
                                if depth == 0 {
                                    return Ok(());
                                }
                            }
                        }
                        None => {
                            self.pos = self.buf.len();
                            if !self.fill()? {
                                let what = if open == b'{' { "object" } else { "array" };
                                return Err(self.unclosed(start, what));
                            }
                        }
                    }
                }
            }
            Some(_) => loop {
                match self.buf[self.pos..].iter().position(|b| {
                    matches!(b, b',' | b'}' | b']' | b'{' | b'[' | b'"') || b.is_ascii_whitespace()
                }) {
                    Some(i) => {
                        self.pos += i;
                        return Ok(());
                    }
                    None => {
                        self.pos = self.buf.len();
                        if !self.fill()? {
                            return Ok(());
                        }
                    }
                }
            },
        }
    }

    /// Copies `[from, pos)` into the batch as one object; false when the receiver is gone.
    fn push_item(&mut self, from: u64, emit: &mut impl FnMut(Batch) -> bool) -> bool {
        self.count_lines_to(from);
        let column = usize::try_from(from - self.line_start).unwrap_or(0) + 1;
        let rel = usize::try_from(from - self.base).unwrap_or(0);
        let start = self.batch.bytes.len();
        self.batch.bytes.extend_from_slice(&self.buf[rel..self.pos]);
        self.batch.items.push(Item {
            start,
            end: self.batch.bytes.len(),
            line: self.line,
            column,
        });
        if self.batch.bytes.len() >= BATCH {
            return emit(std::mem::take(&mut self.batch));
        }
        true
    }

    /// The elements of an array whose `[` was consumed, each an object; false when stopped.
    fn array(&mut self, emit: &mut impl FnMut(Batch) -> bool) -> Result<bool, ScanError> {
        self.skip_ws()?;
        if self.peek()? == Some(b']') {
            self.pos += 1;
            return Ok(true);
        }
        loop {
            self.skip_ws()?;
            let from = self.abs();
            self.mark = Some(from);
            self.skip_value()?;
            let more = self.push_item(from, emit);
            self.mark = None;
            if !more {
                return Ok(false);
            }
            self.skip_ws()?;
            match self.peek()? {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(true);
                }
                _ => return Err(self.syntax("expected `,` or `]` after an item")),
            }
        }
    }

    /// A top-level object: its `items` emitted one by one, then the rest of it, with
    /// `"items": []`, as one more object.
    fn top_object(&mut self, emit: &mut impl FnMut(Batch) -> bool) -> Result<bool, ScanError> {
        self.skip_ws()?;
        let (line, column) = self.here();
        self.expect(b'{', "expected `{`")?;
        let mut shell: Vec<u8> = b"{".to_vec();
        let mut first = true;
        loop {
            self.skip_ws()?;
            if self.peek()? == Some(b'}') {
                self.pos += 1;
                break;
            }
            if !first {
                self.expect(b',', "expected `,` or `}` after a field")?;
                self.skip_ws()?;
            }
            let from = self.abs();
            self.mark = Some(from);
            if self.peek()? != Some(b'"') {
                return Err(self.syntax("expected a field name"));
            }
            self.pos += 1;
            self.skip_string_body(from)?;
            let key_end = self.pos;
            let is_items =
                &self.buf[usize::try_from(from - self.base).unwrap_or(0)..key_end] == b"\"items\"";
            self.skip_ws()?;
            self.expect(b':', "expected `:` after a field name")?;
            self.skip_ws()?;
            if !first {
                shell.push(b',');
            }
            first = false;
            if is_items && self.peek()? == Some(b'[') {
                self.mark = None;
                self.pos += 1;
                // An empty item first: the List is counted before its items, as when the
                // whole dump was parsed as one value.
                let at = self.batch.bytes.len();
                self.batch.items.push(Item {
                    start: at,
                    end: at,
                    line,
                    column,
                });
                if !self.array(emit)? {
                    return Ok(false);
                }
                shell.extend_from_slice(b"\"items\":[]");
            } else {
                self.skip_value()?;
                let rel = usize::try_from(from - self.base).unwrap_or(0);
                shell.extend_from_slice(&self.buf[rel..self.pos]);
                self.mark = None;
            }
        }
        shell.push(b'}');
        let start = self.batch.bytes.len();
        self.batch.bytes.extend_from_slice(&shell);
        self.batch.items.push(Item {
            start,
            end: self.batch.bytes.len(),
            line,
            column,
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str) -> Result<Vec<(String, usize, usize)>, String> {
        let mut out = Vec::new();
        scan(text.as_bytes(), |b| {
            for i in &b.items {
                out.push((
                    String::from_utf8_lossy(&b.bytes[i.start..i.end]).into_owned(),
                    i.line,
                    i.column,
                ));
            }
            true
        })
        .map_err(|e| format!("{e:?}"))?;
        Ok(out)
    }

    #[test]
    fn a_list_is_cut_into_its_items_then_the_rest() {
        let got = cut("{\"kind\": \"List\",\n \"items\": [\n  {\"a\": \"}\\\"{\"}, {\"b\": [1, {\"c\": 2}]}\n], \"x\": 1}")
            .expect("cuts");
        assert_eq!(
            got,
            [
                (String::new(), 1, 1),
                (r#"{"a": "}\"{"}"#.to_owned(), 3, 3),
                (r#"{"b": [1, {"c": 2}]}"#.to_owned(), 3, 18),
                (r#"{"kind": "List","items":[],"x": 1}"#.to_owned(), 1, 1),
            ]
        );
    }

    #[test]
    fn arrays_and_concatenated_objects_are_cut_too() {
        let got = cut("[{\"a\":1},{\"b\":2}] {\"c\":3}").expect("cuts");
        let texts: Vec<&str> = got.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(texts, [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        assert!(cut("").expect("empty").is_empty());
        assert!(cut("[]").expect("empty").is_empty());
    }

    #[test]
    fn broken_structure_is_reported_where_it_starts() {
        let err =
            cut("{\"kind\": \"List\", \"items\": [\n {\"a\": 1}, {\"b\": ").expect_err("open");
        assert!(err.contains("line: 2") && err.contains("object"), "{err}");
        assert!(cut("x").expect_err("not json").contains("expected"));
        assert!(cut("{\"a\" 1}").is_err());
    }

    #[test]
    fn objects_larger_than_a_read_are_kept_whole() {
        let big = format!(
            "{{\"kind\":\"List\",\"items\":[{{\"s\":\"{}\"}}]}}",
            "x".repeat(3 * READ)
        );
        let got = cut(&big).expect("cuts");
        assert_eq!(got[1].0.len(), 3 * READ + 8);
    }
}
