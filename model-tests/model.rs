//! A property test of the supervisor against an OTP-faithful reference model: random
//! children (restart types), strategy and intensity; a random sequence of exits; the
//! event stream of a real supervisor must equal the one the model predicts, step by step.
//!
//! The model is written from OTP's `supervisor.erl` (`do_restart`, `restart/2` per
//! strategy, `add_restart`), not from steadfast's code. The period is long enough that
//! the window never slides during a case; the sliding itself is tested on `Intensity`
//! with synthetic time, in the crate.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Sender};
use proptest::prelude::*;
use steadfast::{Restart, Strategy, Supervisor};

#[derive(Clone, Copy, Debug)]
enum Act {
    Panic,
    Fail,
    Return,
    /// Returns `Err(Stopped)` unasked: reason `shutdown`, which is not abnormal.
    Shutdown,
}

impl Act {
    fn cmd(self) -> Cmd {
        match self {
            Act::Panic => Cmd::Panic("model"),
            Act::Fail => Cmd::Fail("model"),
            Act::Return => Cmd::Return,
            Act::Shutdown => Cmd::Shutdown,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Act::Panic => "panicked",
            Act::Fail => "failed",
            Act::Return => "normal",
            Act::Shutdown => "shutdown",
        }
    }
    fn abnormal(self) -> bool {
        matches!(self, Act::Panic | Act::Fail)
    }
}

struct ModelChild {
    id: String,
    restart: Restart,
    running: bool,
}

/// OTP's supervisor, reduced to what it reports.
struct Model {
    strategy: Strategy,
    max: u32,
    restarts: u32,
    children: Vec<ModelChild>,
    alive: bool,
}

impl Model {
    fn running(&self) -> Vec<usize> {
        (0..self.children.len())
            .filter(|&i| self.children[i].running)
            .collect()
    }

    /// Child `i` exits by `act`: what the supervisor reports, in order.
    fn exit(&mut self, i: usize, act: Act) -> Vec<String> {
        let mut out = vec![format!("exited {} {}", self.children[i].id, act.word())];
        self.children[i].running = false;
        let restart = match self.children[i].restart {
            Restart::Permanent => true,
            Restart::Transient => act.abnormal(),
            Restart::Temporary => false,
        };
        if !restart {
            if self.children[i].restart == Restart::Temporary {
                self.children.remove(i);
            }
            return out;
        }
        // add_restart: more than `max` restarts within the period → shut down.
        self.restarts += 1;
        if self.restarts > self.max {
            out.push("intensity-exceeded".into());
            for c in self.children.iter_mut().rev().filter(|c| c.running) {
                out.push(format!("exited {} shutdown", c.id));
                c.running = false;
            }
            out.push("supervisor-stopped".into());
            self.alive = false;
            return out;
        }
        let group: Vec<usize> = match self.strategy {
            Strategy::OneForOne => vec![i],
            Strategy::OneForAll => (0..self.children.len()).collect(),
            Strategy::RestForOne => (i..self.children.len()).collect(),
        };
        // Terminate the others in reverse start order; temporary ones are dropped.
        for &j in group.iter().rev().filter(|&&j| j != i) {
            if self.children[j].running {
                out.push(format!("exited {} shutdown", self.children[j].id));
                self.children[j].running = false;
            }
        }
        let dropped: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&j| j != i && self.children[j].restart == Restart::Temporary)
            .collect();
        // Start the group in start order (indices shift as temporaries go).
        let keep: Vec<String> = group
            .iter()
            .filter(|j| !dropped.contains(j))
            .map(|&j| self.children[j].id.clone())
            .collect();
        for &j in dropped.iter().rev() {
            self.children.remove(j);
        }
        for id in keep {
            out.push(format!("restarted {id}"));
            let c = self.children.iter_mut().find(|c| c.id == id).unwrap();
            c.running = true;
        }
        out
    }

    /// What a shutdown reports.
    fn shutdown(&mut self) -> Vec<String> {
        let mut out: Vec<String> = self
            .children
            .iter()
            .rev()
            .filter(|c| c.running)
            .map(|c| format!("exited {} shutdown", c.id))
            .collect();
        out.push("supervisor-stopped".into());
        out
    }
}

fn restart_type() -> impl proptest::strategy::Strategy<Value = Restart> {
    prop_oneof![
        Just(Restart::Permanent),
        Just(Restart::Transient),
        Just(Restart::Temporary)
    ]
}

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::OneForOne),
        Just(Strategy::OneForAll),
        Just(Strategy::RestForOne)
    ]
}

fn act() -> impl proptest::strategy::Strategy<Value = Act> {
    prop_oneof![
        3 => Just(Act::Panic),
        2 => Just(Act::Fail),
        1 => Just(Act::Return),
        1 => Just(Act::Shutdown)
    ]
}

fn run_case(restarts: Vec<Restart>, strategy: Strategy, max: u32, steps: Vec<(usize, Act)>) {
    let mut model = Model {
        strategy,
        max,
        restarts: 0,
        children: restarts
            .iter()
            .enumerate()
            .map(|(i, &restart)| ModelChild {
                id: format!("c{i}"),
                restart,
                running: true,
            })
            .collect(),
        alive: true,
    };
    let (sink, events) = unbounded();
    let mut builder = Supervisor::builder()
        .strategy(strategy)
        .intensity(max, Duration::from_secs(3600))
        .event_sink(sink);
    let mut cmds: Vec<Sender<Cmd>> = Vec::new();
    for (i, &restart) in restarts.iter().enumerate() {
        let (spec, tx) = controlled(&format!("c{i}"));
        builder = builder.child(spec.restart(restart));
        cmds.push(tx);
    }
    let sup = builder.start().unwrap();
    for i in 0..restarts.len() {
        assert_eq!(brief(&next(&events)), format!("started c{i}"));
    }
    for (pick, act) in steps {
        let running = model.running();
        if !model.alive || running.is_empty() {
            break;
        }
        let i = running[pick % running.len()];
        let n: usize = model.children[i].id[1..].parse().unwrap();
        let expected = model.exit(i, act);
        cmds[n].send(act.cmd()).unwrap();
        let got: Vec<String> = (0..expected.len()).map(|_| brief(&next(&events))).collect();
        assert_eq!(got, expected, "after c{n} {act:?}");
    }
    if model.alive {
        let listed: Vec<(String, bool)> = sup
            .which_children()
            .unwrap()
            .iter()
            .map(|c| (c.id.to_string(), c.pid.is_some()))
            .collect();
        let modelled: Vec<(String, bool)> = model
            .children
            .iter()
            .map(|c| (c.id.clone(), c.running))
            .collect();
        assert_eq!(listed, modelled);
        let expected = model.shutdown();
        sup.shutdown().unwrap();
        let got: Vec<String> = (0..expected.len()).map(|_| brief(&next(&events))).collect();
        assert_eq!(got, expected, "shutdown");
    } else {
        assert!(matches!(
            sup.join(),
            Err(steadfast::SupervisorError::IntensityExceeded { .. })
        ));
    }
    assert!(events.try_recv().is_err(), "no event beyond the model's");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // A wrong prediction costs an event deadline per shrinking step: keep it short.
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn supervisor_matches_the_otp_model(
        restarts in prop::collection::vec(restart_type(), 1..6),
        strategy in strategy(),
        max in 0u32..6,
        steps in prop::collection::vec((0usize..8, act()), 1..14),
    ) {
        run_case(restarts, strategy, max, steps);
    }
}
