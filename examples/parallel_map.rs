//! A bounded parallel map over supervised tasks: hash a directory's files four at a
//! time, where one file is missing (its task fails) and one trips a bug (its task
//! panics). Each outcome comes back in input order; the crashes stay in their tasks; the
//! program checks its own outcome and exits non-zero if it does not hold.
//!
//! `cargo run --example parallel_map`

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use steadfast::{task, ChildError, ExitReason};

/// Hashes a file's bytes, reading it in blocks.
fn hash_file(path: &Path) -> Result<u64, ChildError> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = DefaultHasher::new();
    let mut block = [0u8; 8192];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        if block[..n].starts_with(b"BUG") {
            panic!("the parser tripped over {}", path.display());
        }
        hasher.write(&block[..n]);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    steadfast::route_panics_to_log(); // the crash shows in the outcome, not on stderr
    let dir = std::env::temp_dir().join(format!("steadfast-parallel-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for i in 0..10 {
        let path = dir.join(format!("file-{i}.txt"));
        std::fs::write(
            &path,
            format!("contents of file {i}\n").repeat(100 * (i + 1)),
        )?;
        paths.push(path);
    }
    std::fs::write(dir.join("buggy.txt"), "BUG: this one trips the parser")?;
    paths.insert(3, dir.join("missing.txt")); // never written
    paths.insert(7, dir.join("buggy.txt"));

    let outcomes: Vec<(PathBuf, Result<u64, ExitReason>)> = {
        let names = paths.clone();
        let results = task::map(paths, |path, _ctx| hash_file(&path))
            .max_concurrency(4)
            .timeout(Duration::from_secs(10))
            .run()?;
        names.into_iter().zip(results).collect()
    };
    std::fs::remove_dir_all(&dir)?;

    let (mut hashed, mut failed, mut crashed) = (0, 0, 0);
    for (path, outcome) in &outcomes {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match outcome {
            Ok(hash) => {
                hashed += 1;
                println!("{name:>12}  {hash:016x}");
            }
            Err(ExitReason::Panicked(why)) => {
                crashed += 1;
                println!("{name:>12}  crashed: {why}");
            }
            Err(why) => {
                failed += 1;
                println!("{name:>12}  {why}");
            }
        }
    }
    println!("{hashed} hashed, {failed} failed, {crashed} crashed, in input order");
    if (hashed, failed, crashed) != (10, 1, 1) {
        return Err(format!(
            "expected 10 hashed, 1 failed, 1 crashed; got {hashed}/{failed}/{crashed}"
        )
        .into());
    }
    println!("live steadfast threads: {}", steadfast::live_threads());
    Ok(())
}
