//! What a restarted child knows: `Context::incarnation` and `Context::previous_exit`, on
//! every restart path (its own thread, the supervisor's, a group, `restart_child`).

mod common;

use common::*;
use steadfast::channel::{unbounded, Receiver};
use steadfast::{ChildSpec, DynamicSupervisor, ExitReason, Strategy, Supervisor};

/// A child that reports `(incarnation, previous exit)` at each start, then obeys `cmd`.
fn reporting(id: &str) -> (ChildSpec, Receiver<(u64, Option<ExitReason>)>, CmdTx) {
    let (seen_tx, seen) = unbounded();
    let (cmd_tx, cmd) = unbounded::<Cmd>();
    let spec = ChildSpec::worker(id, move |ctx| {
        seen_tx
            .send((ctx.incarnation(), ctx.previous_exit().cloned()))
            .unwrap();
        match ctx.recv(&cmd)? {
            Cmd::Panic(msg) => panic!("{msg}"),
            Cmd::Fail(msg) => Err(msg.into()),
            Cmd::Return => Ok(()),
            Cmd::Shutdown => Err(steadfast::Stopped.into()),
        }
    });
    (spec, seen, cmd_tx)
}

type CmdTx = steadfast::channel::Sender<Cmd>;

fn seen(rx: &Receiver<(u64, Option<ExitReason>)>) -> (u64, Option<ExitReason>) {
    rx.recv_timeout(DEADLINE).expect("the child started")
}

#[test]
fn one_for_one_restarts_count_up_and_carry_the_reason() {
    let (spec, rx, cmd) = reporting("w");
    let sup = Supervisor::builder()
        .intensity(10, DEADLINE)
        .child(spec)
        .start()
        .unwrap();
    assert_eq!(seen(&rx), (0, None));
    cmd.send(Cmd::Panic("boom")).unwrap();
    assert_eq!(seen(&rx), (1, Some(ExitReason::Panicked("boom".into()))));
    cmd.send(Cmd::Fail("bad")).unwrap();
    assert_eq!(seen(&rx), (2, Some(ExitReason::Failed("bad".into()))));
    cmd.send(Cmd::Return).unwrap();
    assert_eq!(seen(&rx), (3, Some(ExitReason::Normal)));
    drop(sup);
}

#[test]
fn fresh_thread_restarts_count_the_same_way() {
    let (spec, rx, cmd) = reporting("w");
    let sup = Supervisor::builder()
        .intensity(10, DEADLINE)
        .child(spec.fresh_thread())
        .start()
        .unwrap();
    assert_eq!(seen(&rx), (0, None));
    cmd.send(Cmd::Panic("boom")).unwrap();
    assert_eq!(seen(&rx), (1, Some(ExitReason::Panicked("boom".into()))));
    drop(sup);
}

#[test]
fn a_group_restart_tells_bystanders_they_were_stopped() {
    let (a, a_rx, a_cmd) = reporting("a");
    let (b, b_rx, _b_cmd) = reporting("b");
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .intensity(10, DEADLINE)
        .child(a)
        .child(b)
        .start()
        .unwrap();
    assert_eq!(seen(&a_rx), (0, None));
    assert_eq!(seen(&b_rx), (0, None));
    a_cmd.send(Cmd::Panic("a died")).unwrap();
    assert_eq!(
        seen(&a_rx),
        (1, Some(ExitReason::Panicked("a died".into())))
    );
    assert_eq!(seen(&b_rx), (1, Some(ExitReason::Shutdown)));
    drop(sup);
}

#[test]
fn restart_child_after_terminate_is_the_next_incarnation() {
    let (spec, rx, _cmd) = reporting("w");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    assert_eq!(seen(&rx), (0, None));
    sup.terminate_child("w").unwrap();
    sup.restart_child("w").unwrap();
    assert_eq!(seen(&rx), (1, Some(ExitReason::Shutdown)));
    drop(sup);
}

#[test]
fn dynamic_children_start_at_zero_and_count_their_own_restarts() {
    let pool = DynamicSupervisor::builder()
        .intensity(10, DEADLINE)
        .start()
        .unwrap();
    let (spec, rx, cmd) = reporting("d");
    pool.start_child(spec.clone()).unwrap();
    assert_eq!(seen(&rx), (0, None));
    cmd.send(Cmd::Fail("x")).unwrap();
    assert_eq!(seen(&rx), (1, Some(ExitReason::Failed("x".into()))));
    // A second child from the same spec is a first incarnation of its own.
    pool.start_child(spec).unwrap();
    assert_eq!(seen(&rx), (0, None));
    drop(pool);
}
