//! Plain-text output: aligned tables and human-readable ages, durations, times and costs.

use std::io::{self, Write};

use steadfast_durable::Millis;

/// How a column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

enum Row {
    Cells(Vec<String>),
    /// A line printed as is under the previous row; it does not widen the columns.
    Note(String),
}

/// A table of plain columns separated by two spaces.
pub struct Table {
    headers: Vec<&'static str>,
    align: Vec<Align>,
    rows: Vec<Row>,
}

impl Table {
    /// A table with these columns.
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            align: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Row::Cells(cells));
    }

    /// Add a free-form line under the last row.
    pub fn note(&mut self, line: String) {
        self.rows.push(Row::Note(line));
    }

    /// Print the table. Trailing spaces are left out, so the last column may be of any width.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (w, c) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(width(c));
                }
            }
        }
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        self.write_cells(out, &widths, &headers)?;
        for row in &self.rows {
            match row {
                Row::Cells(cells) => self.write_cells(out, &widths, cells)?,
                Row::Note(line) => writeln!(out, "{line}")?,
            }
        }
        Ok(())
    }

    fn write_cells(
        &self,
        out: &mut impl Write,
        widths: &[usize],
        cells: &[String],
    ) -> io::Result<()> {
        let mut line = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(w.saturating_sub(width(cell)));
            if i > 0 {
                line.push_str("  ");
            }
            match self.align[i] {
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
        }
        writeln!(out, "{}", line.trim_end())
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` on one line, cut to at most `max` characters with an ellipsis.
pub fn shorten(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if width(&one_line) <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An age: `5s`, `3m`, `2h`, `4d`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A duration given in microseconds: `850µs`, `12.3ms`, `1.25s`, `2m05s`.
pub fn duration_us(us: i64) -> String {
    let us = us.max(0);
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        let ms = us as f64 / 1_000.0;
        if ms < 10.0 {
            format!("{ms:.2}ms")
        } else {
            format!("{ms:.1}ms")
        }
    } else if us < 60_000_000 {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    } else {
        let s = us / 1_000_000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// US dollars with four decimals: `$0.0125`.
pub fn usd(cost: f64) -> String {
    format!("${cost:.4}")
}

/// A UTC time in RFC 3339: `2025-06-01T12:00:00.250Z`.
pub fn rfc3339(ms: Millis) -> String {
    let (date, secs, milli) = split(ms);
    format!(
        "{date}T{:02}:{:02}:{:02}.{milli:03}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A UTC time for people: `2025-06-01 12:00:00 UTC`.
pub fn datetime(ms: Millis) -> String {
    let (date, secs, _) = split(ms);
    format!(
        "{date} {:02}:{:02}:{:02} UTC",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The date, the seconds into the day and the milliseconds of `ms` since the epoch.
fn split(ms: Millis) -> (String, i64, i64) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        in_day / 1000,
        in_day % 1000,
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift to an era starting on 0000-03-01, so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A JSON value on one line.
pub fn compact(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `value` as pretty JSON on a line of its own (what `--json` prints).
pub fn json(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_keep_notes_out_of_the_widths() {
        let mut t = Table::new(&[
            ("ID", Align::Left),
            ("N", Align::Right),
            ("LAST", Align::Left),
        ]);
        t.row(vec!["a".into(), "1".into(), "x".into()]);
        t.note("  a long note that is wider than every column".into());
        t.row(vec!["bbb".into(), "22".into(), String::new()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "ID    N  LAST\na     1  x\n  a long note that is wider than every column\nbbb  22\n"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(age(5_400), "5s");
        assert_eq!(age(3 * 60_000 + 10), "3m");
        assert_eq!(age(2 * 3_600_000), "2h");
        assert_eq!(age(4 * 86_400_000 + 5), "4d");
        assert_eq!(age(-50), "0s");
        assert_eq!(duration_us(850), "850µs");
        assert_eq!(duration_us(1_234), "1.23ms");
        assert_eq!(duration_us(12_345), "12.3ms");
        assert_eq!(duration_us(1_250_000), "1.25s");
        assert_eq!(duration_us(125_000_000), "2m05s");
        assert_eq!(usd(0.0125), "$0.0125");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("a\nb", 10), "a b");
    }

    #[test]
    fn utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_250), "2000-02-29T00:00:00.250Z");
        assert_eq!(datetime(1_748_779_200_000), "2025-06-01 12:00:00 UTC");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
