//! `--count-statements`: the SQL statements a sign-in costs, read from the spawned
//! processes' logs. With `sqlx::query=debug` sqlx logs one event per statement it
//! runs, on every connection (sea-orm's, apalis's), on SQLite and PostgreSQL alike;
//! the SQLite writer's are inside its `sqlite_writer` span. Counting them costs the
//! logging, so a counting run's CPU figures are not the product's.

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

/// The filter that makes sqlx log each statement, on top of `base` (or `info`).
pub fn log_filter(base: Option<&str>) -> String {
    format!("{},sqlx::query=debug", base.unwrap_or("info"))
}

/// Where each log file of a deployment stood when the load began.
pub struct Mark(Vec<(PathBuf, u64)>);

impl Mark {
    /// The current length of every `*.log` in `dir`.
    pub fn now(dir: &Path) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                files.push((path.clone(), std::fs::metadata(&path)?.len()));
            }
        }
        files.sort();
        Ok(Self(files))
    }

    /// Prints the statements logged since the mark, per sign-in, in total, on the
    /// SQLite writer, and by kind (sqlx's summary of the statement).
    pub fn report(&self, sign_ins: usize) -> anyhow::Result<()> {
        let mut total = 0usize;
        let mut on_writer = 0usize;
        let mut by_kind: HashMap<String, usize> = HashMap::new();
        for (path, from) in &self.0 {
            let mut file = std::fs::File::open(path)?;
            file.seek(SeekFrom::Start(*from))?;
            let mut text = String::new();
            // Bounded: what one run logged.
            file.take(1 << 31).read_to_string(&mut text)?;
            for line in text.lines() {
                let Some((prefix, summary)) = statement(line) else {
                    continue;
                };
                total += 1;
                if prefix.contains("sqlite_writer") {
                    on_writer += 1;
                }
                *by_kind.entry(summary.to_owned()).or_default() += 1;
            }
        }
        anyhow::ensure!(sign_ins > 0, "no sign-in to divide by");
        let per = |n: usize| n as f64 / sign_ins as f64;
        println!(
            "SQL statements per sign-in: {:.1} in total, {:.1} on the SQLite writer",
            per(total),
            per(on_writer)
        );
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (summary, n) in kinds.iter().take(25) {
            println!("  {:>6.2}  {summary}", per(*n));
        }
        println!("(a counting run logs every statement: its CPU figures are not the product's)");
        Ok(())
    }
}

/// The span prefix and sqlx's summary of a statement event, if `line` is one.
fn statement(line: &str) -> Option<(&str, &str)> {
    let (prefix, rest) = line.split_once("sqlx::query: summary=\"")?;
    // The value ends at the first quote that is not escaped.
    let mut escaped = false;
    let end = rest
        .char_indices()
        .find(|&(_, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes
        })
        .map_or(rest.len(), |(i, _)| i);
    Some((prefix, &rest[..end]))
}

#[cfg(test)]
mod tests {
    use super::statement;

    #[test]
    fn statement_lines_give_their_span_and_summary() {
        let line = r#"2026-11-29T21:00:00Z DEBUG sqlite_writer: sqlx::query: summary="INSERT INTO \"session\" …" db.statement="" rows_affected=1"#;
        let (prefix, summary) = statement(line).unwrap();
        assert!(prefix.contains("sqlite_writer"));
        assert_eq!(summary, r#"INSERT INTO \"session\" …"#);
        assert!(statement("2026-11-29T21:00:00Z INFO api: signed in").is_none());
        let update = r#"DEBUG sqlx::query: summary="UPDATE \"async_operation\" SET \"status\" …" db.statement="x""#;
        assert_eq!(
            statement(update).unwrap().1,
            r#"UPDATE \"async_operation\" SET \"status\" …"#
        );
    }
}
