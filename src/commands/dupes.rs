//! `imgvec dupes [PATH…]`: the groups of exact copies and near duplicates in the index, each with
//! a suggested keeper, as a table, JSON lines or CSV. Finding them is `crate::dupes`; this file
//! opens the store, scopes the search to the paths given, and prints. Nothing is deleted.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::prune::check::roots;
use super::{open_store, runtime};
use crate::cli::DupesArgs;
use crate::dupes::{find, Group, Member, Options, Stats};
use crate::progress::Progress;

pub fn run(args: &DupesArgs) -> Result<ExitCode> {
    let mut opts = Options::new(args.max_distance);
    opts.label = args.label.clone();
    if !args.paths.is_empty() {
        let roots = roots(&args.paths)?;
        opts.scope = Some(Arc::new(move |p: &str| roots.iter().any(|r| r.holds(p))));
    }
    let rt = runtime()?;
    let store: Arc<dyn crate::store::VectorStore> =
        Arc::from(rt.block_on(async { open_store(&args.store) })?);
    let total = rt.block_on(store.count())?;
    let started = Instant::now();
    let mut progress = Progress::new(total, args.quiet || args.json || args.csv, "read");
    let mut shown = 0;
    let (groups, stats) = rt.block_on(find(store, &opts, |n| {
        progress.advance((n - shown) as u64, 0);
        shown = n;
    }))?;
    progress.finish();
    let mut out = std::io::stdout().lock();
    if args.json {
        for g in &groups {
            writeln!(out, "{}", serde_json::to_string(g)?)?;
        }
    } else if args.csv {
        print_csv(&mut out, &groups)?;
    } else {
        print_table(&mut out, &groups)?;
    }
    if !args.quiet {
        eprintln!("{}", summary(&groups, &stats, args.max_distance, started));
    }
    Ok(ExitCode::SUCCESS)
}

/// One block per group: a heading, then a line per file, the keeper marked.
fn print_table(out: &mut impl Write, groups: &[Group]) -> std::io::Result<()> {
    for (n, g) in groups.iter().enumerate() {
        let kind = if g.exact {
            "exact copies".to_string()
        } else {
            format!("near duplicates, spread {:.3}", g.spread)
        };
        writeln!(out, "group {} · {} files · {kind}", n + 1, g.members.len())?;
        let keeper = &g.members[0];
        for m in &g.members {
            let mark = if m.keep { "keep" } else { "" };
            let same = if !m.keep && m.id == keeper.id {
                "  (same bytes)"
            } else {
                ""
            };
            let gone = if m.on_disk { "" } else { "  (not on disk)" };
            writeln!(
                out,
                "  {mark:4}  {:>11}  {:>9}  {:16}  {:>6.3}  {}{same}{gone}",
                format!("{}×{}", m.width, m.height),
                human_bytes(m.bytes),
                m.mtime_ms.map(utc_minute).unwrap_or_default(),
                m.distance,
                m.path
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// `group,keep,path,…`: one row per file.
fn print_csv(out: &mut impl Write, groups: &[Group]) -> std::io::Result<()> {
    writeln!(
        out,
        "group,keep,path,id,label,width,height,bytes,mtime_ms,distance,exact_copy_of_keeper"
    )?;
    for (n, g) in groups.iter().enumerate() {
        for m in &g.members {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{:.6},{}",
                n + 1,
                m.keep,
                csv_field(&m.path),
                m.id,
                csv_field(&m.label),
                m.width,
                m.height,
                m.bytes,
                m.mtime_ms.map(|t| t.to_string()).unwrap_or_default(),
                m.distance,
                m.id == g.members[0].id
            )?;
        }
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The totals: groups, files, what could go and how much space that is.
fn summary(groups: &[Group], stats: &Stats, max_distance: f32, started: Instant) -> String {
    let files: usize = groups.iter().map(|g| g.members.len()).sum();
    let extra: Vec<&Member> = groups
        .iter()
        .flat_map(|g| g.members.iter().filter(|m| !m.keep))
        .collect();
    let bytes: u64 = extra.iter().map(|m| m.bytes).sum();
    format!(
        "imgvec: {} groups, {files} files within distance {max_distance}: {} besides the keepers \
         ({}); looked at {} images ({} paths) with {} queries in {:.1} s. Nothing was deleted.",
        groups.len(),
        extra.len(),
        human_bytes(bytes),
        stats.documents,
        stats.paths,
        stats.queries,
        started.elapsed().as_secs_f64()
    )
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.0} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM` (UTC).
fn utc_minute(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_fields_print_as_people_and_spreadsheets_expect() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(1_709_210_096_000), "2024-02-29 12:34");
        assert_eq!(utc_minute(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(csv_field("/a/b.jpg"), "/a/b.jpg");
        assert_eq!(csv_field("/a/x, \"y\".jpg"), "\"/a/x, \"\"y\"\".jpg\"");
        assert_eq!(human_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(human_bytes(900), "900 B");
    }
}
