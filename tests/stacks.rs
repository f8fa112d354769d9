//! Stack sizes: a supervisor-wide default for its children's threads, a child's own
//! size over it, and a reused thread only for a child of the same size.

use std::time::Duration;

use steadfast::channel;
use steadfast::{ChildSpec, DynamicSupervisor, StartError, Supervisor, SupervisorError};

const DEADLINE: Duration = Duration::from_secs(10);

/// How much stack the calling thread has left below this frame (Linux): from here down
/// to the start of the mapping that holds its stack (below it lies the guard page, a
/// mapping of its own; a neighbour above may merge with it, not one below).
fn my_stack_mapping() -> usize {
    let local = 0u8;
    let here = std::hint::black_box(&local) as *const u8 as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let range = line.split_whitespace().next().unwrap();
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            usize::from_str_radix(start, 16).unwrap(),
            usize::from_str_radix(end, 16).unwrap(),
        );
        if (start..end).contains(&here) {
            return here - start;
        }
    }
    panic!("no mapping holds the stack")
}

/// A task that reports the size of its stack's mapping.
fn measuring(id: &str, sizes: channel::Sender<(String, usize)>) -> ChildSpec {
    let id = id.to_owned();
    ChildSpec::task(id.clone(), move |_ctx| {
        sizes.send((id.clone(), my_stack_mapping()))?;
        Ok(())
    })
}

#[test]
fn children_get_the_supervisors_stack_size_unless_they_set_their_own() {
    const SMALL: usize = 64 * 1024;
    let (tx, sizes) = channel::unbounded();
    let sup = Supervisor::builder()
        .stack_size(SMALL)
        .child(measuring("small", tx.clone()))
        .child(measuring("own", tx.clone()).stack_size(4 << 20))
        .start()
        .unwrap();
    let mut got: Vec<(String, usize)> = (0..2)
        .map(|_| sizes.recv_timeout(DEADLINE).unwrap())
        .collect();
    got.sort();
    let (own, small) = (got[0].1, got[1].1);
    assert!(small < SMALL, "{small} bytes left");
    assert!(own > 2 << 20, "{own} bytes left");
    sup.shutdown().unwrap();
}

#[test]
fn a_reused_thread_runs_only_children_of_its_stack_size() {
    const SMALL: usize = 64 * 1024;
    let (tx, sizes) = channel::unbounded();
    let sup = DynamicSupervisor::builder()
        .stack_size(SMALL)
        .reuse_threads(4)
        .start()
        .unwrap();
    for n in 0..10 {
        let spec = measuring(&format!("c{n}"), tx.clone());
        let spec = if n % 2 == 0 {
            spec
        } else {
            spec.stack_size(4 << 20)
        };
        let pid = sup.start_child(spec).unwrap();
        let (_, size) = sizes.recv_timeout(DEADLINE).unwrap();
        if n % 2 == 0 {
            assert!(size < SMALL, "child {n}: {size} bytes left");
        } else {
            assert!(size > 2 << 20, "child {n}: {size} bytes left");
        }
        steadfast::monitor(pid).recv_timeout(DEADLINE).unwrap();
    }
    sup.shutdown().unwrap();
}

#[test]
fn a_zero_stack_size_is_an_invalid_spec() {
    let err = Supervisor::builder().stack_size(0).start().unwrap_err();
    assert!(
        matches!(err, StartError::InvalidSpec(ref why) if why.contains("stack")),
        "{err}"
    );
    let err = DynamicSupervisor::builder()
        .stack_size(0)
        .start()
        .unwrap_err();
    assert!(
        matches!(err, StartError::InvalidSpec(ref why) if why.contains("stack")),
        "{err}"
    );
}

/// Extreme input: the operating system refuses the thread, and the start says so.
#[test]
fn a_stack_no_machine_can_give_is_an_error_not_a_panic() {
    for bytes in [usize::MAX, usize::MAX / 2, 1 << 60] {
        let sup = DynamicSupervisor::builder().start().unwrap();
        let result = sup.start_child(
            ChildSpec::worker("huge", |ctx| {
                let _ = ctx.stop_signal().recv();
                Ok(())
            })
            .stack_size(bytes),
        );
        assert!(
            matches!(
                result,
                Err(SupervisorError::StartFailed(StartError::Spawn { .. }))
            ),
            "{bytes}: {result:?}"
        );
        sup.shutdown().unwrap();
    }
}
