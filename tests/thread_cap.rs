//! The global thread cap turns thread exhaustion into an error value. The cap is global
//! state, so these tests have their own binary and run one after another.

mod common;

use common::*;
use steadfast::{DynamicSupervisor, SpawnError, StartError, Supervisor, SupervisorError};

#[test]
fn starts_beyond_the_cap_fail_and_succeed_again_after_room_is_made() {
    let _serial = serial();
    let default = steadfast::max_threads();
    assert!(
        default >= 64,
        "a sane default is derived from the system: {default}"
    );
    let pool = DynamicSupervisor::builder().start().unwrap();
    steadfast::set_max_threads(steadfast::live_threads() + 4);
    let pids: Vec<_> = (0..4)
        .map(|_| pool.start_child(idle("job")).unwrap())
        .collect();
    let err = pool.start_child(idle("job")).unwrap_err();
    assert!(
        matches!(
            err,
            SupervisorError::StartFailed(StartError::Spawn {
                source: SpawnError::ThreadLimit { .. },
                ..
            })
        ),
        "{err:?}"
    );
    // A whole new tree is refused the same way, without a panic.
    assert!(matches!(
        Supervisor::builder().start(),
        Err(StartError::Spawn { .. })
    ));
    // The tree and the process stay healthy; terminating makes room again.
    assert_eq!(pool.count_children().unwrap().active, 4);
    pool.terminate_child(pids[0]).unwrap();
    pool.terminate_child(pids[1]).unwrap();
    pool.start_child(idle("job")).unwrap();
    steadfast::set_max_threads(default);
    pool.shutdown().unwrap();
}

#[test]
fn a_cap_of_zero_refuses_every_start() {
    let _serial = serial();
    let default = steadfast::max_threads();
    steadfast::set_max_threads(0);
    let err = Supervisor::builder().child(idle("a")).start().unwrap_err();
    steadfast::set_max_threads(default);
    assert!(matches!(
        err,
        StartError::Spawn {
            source: SpawnError::ThreadLimit { limit: 0 },
            ..
        }
    ));
}

// ---- what the cap saves the process from -----------------------------------------------

const SCENARIO: &str = "STEADFAST_TEST_CAP_SCENARIO";

/// Runs only as a subprocess of the test below: starts idle children until a start
/// fails, then checks the process still works (memory, new threads).
#[test]
#[ignore = "run by the_cap_is_what_keeps_a_full_process_alive, in a subprocess"]
fn fill_scenario() {
    let Some(mode) = std::env::var_os(SCENARIO) else {
        return;
    };
    if mode == "uncapped" {
        steadfast::set_max_threads(usize::MAX);
    }
    let pool = DynamicSupervisor::builder().start().unwrap();
    let mut pids = Vec::new();
    let err = loop {
        match pool.start_child(idle("filler")) {
            Ok(pid) => pids.push(pid),
            Err(e) => break e,
        }
    };
    println!("started {} children, then: {err:?}", pids.len());
    // The rest of the program must still be able to make a thread of its own (std's
    // `thread::spawn` panics when it cannot).
    let plain = std::thread::Builder::new().spawn(|| ()).map(|t| t.join());
    match plain {
        Ok(_) => println!("plain thread: ok"),
        Err(e) => println!("plain thread: failed ({e})"),
    }
    // Fresh memory, and starts after making room.
    let blocks: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 1 << 20]).collect();
    for pid in pids.drain(..16) {
        pool.terminate_child(pid).unwrap();
    }
    for _ in 0..16 {
        pids.push(pool.start_child(idle("again")).unwrap());
    }
    println!("healthy ({} MiB allocated)", blocks.len());
    // Skip stopping thousands of children one by one: the point is made.
    std::process::exit(0);
}

fn run_fill(mode: &str) -> std::process::Output {
    scenario("fill_scenario", SCENARIO, mode).output().unwrap()
}

#[test]
fn the_cap_is_what_keeps_a_full_process_alive() {
    let maps: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(usize::MAX);
    if maps > 262_144 {
        // Exhausting a large map budget would take minutes and gigabytes: not here.
        eprintln!("skipped: vm.max_map_count = {maps} is too large to exhaust in a test");
        return;
    }
    // With the default cap, filling it is an error value and the process carries on.
    let capped = run_fill("capped");
    let out = String::from_utf8_lossy(&capped.stdout);
    assert!(capped.status.success(), "{:?}\n{out}", capped.status);
    assert!(out.contains("ThreadLimit"), "{out}");
    assert!(out.contains("plain thread: ok"), "{out}");
    assert!(out.contains("healthy"), "{out}");
    // Without it, the same program runs into the system's limit (memory mappings, here):
    // the rest of the process can no longer make a thread — std's `thread::spawn` would
    // panic — or, depending on where the limit bites, the process aborts.
    let uncapped = run_fill("uncapped");
    let (out, err) = (
        String::from_utf8_lossy(&uncapped.stdout),
        String::from_utf8_lossy(&uncapped.stderr),
    );
    assert!(
        !uncapped.status.success() || out.contains("plain thread: failed"),
        "{:?}\n{out}\n{err}",
        uncapped.status
    );
    assert!(!out.contains("ThreadLimit"), "{out}");
}

// ---- under an address-space limit, stacks count by their size ---------------------------

const STACKS: &str = "STEADFAST_TEST_STACK_BUDGET";

/// Runs only as a subprocess of the test below, under `ulimit -v`: fills a supervisor
/// of large-stack children until a start fails, then starts more small-stack children
/// than a count assuming 2 MiB stacks would allow.
#[test]
#[ignore = "run by stacks_count_by_their_size_under_an_address_space_limit, in a subprocess"]
fn stack_budget_scenario() {
    if std::env::var_os(STACKS).is_none() {
        return;
    }
    let big = DynamicSupervisor::builder()
        .stack_size(64 << 20)
        .start()
        .unwrap();
    // A stack larger than the whole budget is refused by the budget, never counted.
    if let Err(SupervisorError::StartFailed(StartError::Spawn {
        source: SpawnError::AddressSpace { .. },
        ..
    })) = big.start_child(idle("huge").stack_size(usize::MAX))
    {
        println!("huge refused by the stack budget");
    }
    let mut started = 0;
    let err = loop {
        match big.start_child(idle("big")) {
            Ok(_) => started += 1,
            Err(e) => break e,
        }
        if started == 10_000 {
            panic!("10,000 children of 64 MiB stacks started under the limit");
        }
    };
    println!("big: {started}, then {err}");
    if let SupervisorError::StartFailed(StartError::Spawn {
        source: SpawnError::AddressSpace { .. },
        ..
    }) = err
    {
        println!("big stopped by the stack budget");
    }
    big.shutdown().unwrap();
    let small = DynamicSupervisor::builder()
        .stack_size(64 << 10)
        .start()
        .unwrap();
    for n in 0..3_000 {
        if let Err(e) = small.start_child(idle("small")) {
            println!("small: failed after {n}: {e}");
            std::process::exit(0);
        }
    }
    println!("small: 3000 started");
    std::process::exit(0);
}

#[test]
fn stacks_count_by_their_size_under_an_address_space_limit() {
    let _serial = serial();
    // 8 GiB of address space: a 4 GiB stack budget. Counted as 2 MiB stacks that would
    // be 2,048 threads whatever their size.
    let test = scenario("stack_budget_scenario", STACKS, "1");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -v 8388608 2>/dev/null || exit 77; exec "$0" "$@""#)
        .arg(test.get_program())
        .args(test.get_args())
        .envs(test.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("RUST_BACKTRACE");
    let out = cmd.output().unwrap();
    if out.status.code() == Some(77) {
        eprintln!("skipped: this process may not set an 8 GiB address-space limit");
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("huge refused by the stack budget"), "{text}");
    assert!(text.contains("big stopped by the stack budget"), "{text}");
    assert!(text.contains("small: 3000 started"), "{text}");
}
