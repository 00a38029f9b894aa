//! The Raft file store against the disk it sits on.
//!
//! ```text
//! drover-bench store-fsync [--dir D] [--entries N]
//! ```
//! First the disk's own rate: 4 KiB appends, each followed by `fdatasync`. Then the
//! [`FileStore`] committing `N` log entries of 256 bytes in batches of 1, 8, 64 and 512
//! entries per sync (a group commit: Raft's batches drained after one input share one
//! sync). Ends with `fsync_per_s=F commits_per_s=C batch=B ratio=R`, the best batch's
//! entries per second against the disk's syncs per second.

use drover_core::raft::{Entry, Payload, Persist};
use drover_core::time::Millis;
use drover_runtime::store::RaftStore;
use drover_runtime::store::file::FileStore;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const ENTRY_PAYLOAD_BYTES: usize = 256;
const DISK_PROBE_SYNCS: u32 = 500;
const BATCH_SIZES: [u64; 4] = [1, 8, 64, 512];

pub fn run(flags: &[String]) -> ExitCode {
    let mut dir = std::env::temp_dir();
    let mut entries: u64 = 20_000;
    for pair in flags.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--dir", Some(path)) => dir = PathBuf::from(path),
            ("--entries", Some(n)) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                entries = n.parse().expect("checked");
            }
            _ => {
                eprintln!("drover-bench store-fsync: expected --dir D or --entries N");
                return ExitCode::from(2);
            }
        }
    }
    let scratch = dir.join(format!("drover-store-bench-{}", std::process::id()));
    let result = measure(&scratch, entries);
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("drover-bench store-fsync: {error}");
            ExitCode::FAILURE
        }
    }
}

fn measure(scratch: &Path, entries: u64) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(scratch)?;
    let fsync_per_s = disk_fsync_rate(&scratch.join("probe"))?;
    println!("disk: {DISK_PROBE_SYNCS} appends of 4 KiB with fdatasync: {fsync_per_s:.0}/s");
    let mut best = (0.0, 0);
    for batch in BATCH_SIZES {
        let dir = scratch.join(format!("batch-{batch}"));
        let (commits_per_s, syncs_per_s) = store_rate(&dir, entries, batch)?;
        println!(
            "store: batch={batch} entries_per_s={commits_per_s:.0} syncs_per_s={syncs_per_s:.0}"
        );
        if commits_per_s > best.0 {
            best = (commits_per_s, batch);
        }
    }
    println!(
        "fsync_per_s={fsync_per_s:.0} commits_per_s={:.0} batch={} ratio={:.1}",
        best.0,
        best.1,
        best.0 / fsync_per_s
    );
    Ok(())
}

fn disk_fsync_rate(path: &Path) -> std::io::Result<f64> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let block = vec![0x5a_u8; 4096];
    let started = Instant::now();
    for _ in 0..DISK_PROBE_SYNCS {
        file.write_all(&block)?;
        file.sync_data()?;
    }
    Ok(f64::from(DISK_PROBE_SYNCS) / started.elapsed().as_secs_f64())
}

/// Entries per second and syncs per second committing `entries` in batches of `batch`.
fn store_rate(
    dir: &Path,
    entries: u64,
    batch: u64,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let mut store = FileStore::open(dir)?;
    let started = Instant::now();
    let mut next_index = 1;
    let mut write_id = 0;
    while next_index <= entries {
        let last = (next_index + batch - 1).min(entries);
        write_id += 1;
        let batch_entries = (next_index..=last)
            .map(|index| Entry {
                term: 1,
                index,
                at: Millis(index),
                payload: Payload::Command(vec![0xab; ENTRY_PAYLOAD_BYTES]),
            })
            .collect();
        store.write(Persist { id: write_id, entries: batch_entries, ..Persist::default() })?;
        assert_eq!(store.sync()?, write_id, "the store reports the write it synced");
        next_index = last + 1;
    }
    let wall_s = started.elapsed().as_secs_f64();
    Ok((entries as f64 / wall_s, write_id as f64 / wall_s))
}
