//! One incarnation of a server: set up, register, serve until stopped, terminate.
//!
//! The loop takes one thing at a time, in this order of turns: work asked for with
//! `continue_with`; then (rotating, so none starves) a due timer, the mailbox, the
//! watched sources; then the idle timeout. With nothing ready it spins briefly on the
//! mailbox (a caller's next request usually lands within microseconds), then blocks
//! until something is ready or the earliest deadline — on the mailbox alone when it has
//! nothing else to wait for, which is its fast path.

use std::hint;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Select, TryRecvError};

use crate::child::context::{Context, ReadyMsg};
use crate::clock;
use crate::error::{ChildError, RegistryError, StartError};
use crate::exit::{panic_reason, ExitReason};
use crate::pid::Pid;
use crate::registry::registry;
use crate::server::callbacks::{Ignore, Serve};
use crate::server::context::{Run, ServerContext};
use crate::server::error::CallError;
use crate::server::handle::ServerRef;
use crate::server::letter::Kind;
use crate::server::mailbox::{Envelope, Mailbox};
use crate::server::packed::Packed;
use crate::server::reply::{ending, fail_orphans, ServingHere, SPIN};
use crate::server::sources::Taken;
use crate::tree;

/// A server's set-up function, run at the start of each incarnation.
pub(super) type Init<S> = dyn Fn(&Context) -> Result<S, ChildError> + Send + Sync;

/// Clears the mailbox's serving pid when its incarnation ends (unless a later one has
/// taken over), so that `ServerRef::pid` is `None` while a crashed server restarts.
struct Serving<'a> {
    serving: &'a AtomicU64,
    pid: Pid,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let me = self.pid.as_u64();
        let _ = self
            .serving
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

pub(super) fn serve<S: Serve>(
    ctx: &Context,
    init: &Init<S>,
    name: Option<&str>,
    handle: &ServerRef<S>,
) -> Result<(), ChildError> {
    let mailbox = &handle.mailbox;
    let _here = ServingHere::enter(mailbox.address());
    let mut state = match init(ctx) {
        Ok(state) => state,
        // Declined (OTP's `ignore`): nothing serves this mailbox until a start succeeds.
        Err(e) if e.downcast_ref::<Ignore>().is_some() => {
            mailbox.shut();
            ctx.ignore();
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    // Serving before it can be found: whoever finds the name (or the pid) finds this
    // incarnation's pid; however it ends, a crash included, it leaves no stale pid.
    mailbox.open(ctx.pid());
    let _serving = Serving {
        serving: &mailbox.serving,
        pid: ctx.pid(),
    };
    if let Some(name) = name {
        if let Err(RegistryError::AlreadyRegistered(holder)) =
            registry().register_value(name, handle.clone())
        {
            mailbox.shut();
            ctx.send_ready(ReadyMsg::Failed(StartError::AlreadyStarted {
                id: ctx.id().to_owned(),
                name: name.to_owned(),
                holder,
            }));
            return Err(RegistryError::AlreadyRegistered(holder).into());
        }
    }
    let _ = tree::SHOWN.register(ctx.pid(), Arc::new(handle.clone()));
    // Wakes the loop, which blocks on the mailbox alone on its fast path, when the stop
    // is raised. A bounded mailbox's loop waits on the stop signal as well instead: an
    // envelope would take a place.
    if !mailbox.bounded {
        let wake = mailbox.tx.clone();
        ctx.on_stop(move || {
            let _ = wake.send(Envelope::Stop);
        });
    }
    ctx.ready();

    let mut run = Run::new(handle.clone());
    let served = panic::catch_unwind(AssertUnwindSafe(|| {
        let reason = serve_until_stopped(&mut state, &mut run, ctx, mailbox);
        if !reason.is_abnormal() {
            // Shut already by its supervisor when it decided a stop (`on_stopped`);
            // again here for a stop of its own, and in case an ordered stop's relay
            // raised this stop a moment before the supervisor got to it. A server
            // stopping itself abnormally keeps its mailbox, as after a crash.
            mailbox.shut();
        }
        state.terminate(&reason, &mut ServerContext { ctx, run: &mut run });
        reason
    }));
    match served {
        Ok(reason) => {
            // Tokens and requests still held fail `Stopped`.
            ending(CallError::Stopped, || drop((state, run)));
            match reason {
                ExitReason::Shutdown if ctx.is_stopping() => Ok(()),
                reason => Err(Box::new(reason)),
            }
        }
        Err(payload) => {
            // The call being handled, and every token the state or the loop held, fail
            // with the crash; then the crash goes on as usual.
            let why = CallError::Exited(ExitReason::Panicked(panic_reason(&*payload)));
            fail_orphans(&why);
            ending(why, || drop((state, run)));
            panic::resume_unwind(payload)
        }
    }
}

/// What the loop does next.
enum Next<S: Serve> {
    Letter(Packed<S>),
    Idle,
    /// Woken (a stop, something ready, a deadline): look again.
    Again,
}

/// Serves until its supervisor stops it (`Shutdown`) or a callback stops it (its reason).
fn serve_until_stopped<S: Serve>(
    state: &mut S,
    run: &mut Run<S>,
    ctx: &Context,
    mailbox: &Mailbox<S>,
) -> ExitReason {
    state.handle_continue(&mut ServerContext { ctx, run });
    let mut turn = 0usize;
    loop {
        if let Some(reason) = run.stop.take() {
            return reason;
        }
        if ctx.is_stopping() {
            return ExitReason::Shutdown;
        }
        if let Some(work) = run.continues.pop_front() {
            work(state, &mut ServerContext { ctx, run });
            continue;
        }
        turn = turn.wrapping_add(1);
        match next(run, ctx, mailbox, turn) {
            // A shut door is a stop decided whose signal has not arrived yet: its
            // supervisor shuts the door first, then fails what is queued, then raises
            // the stop. A letter this loop takes in between is refused as the drain
            // would have refused it, not served behind the stop.
            Next::Letter(letter) if !mailbox.is_open(Ordering::Relaxed) => {
                letter.refuse(CallError::Stopped);
            }
            Next::Letter(letter) => {
                open(state, letter, run, ctx);
                #[cfg(feature = "metrics")]
                run.depth.set(mailbox.rx.len() as f64);
            }
            Next::Idle if !mailbox.is_open(Ordering::Relaxed) => run.idle_armed = false,
            Next::Idle => {
                run.idle_armed = false;
                state.handle_idle(&mut ServerContext { ctx, run });
            }
            Next::Again => {}
        }
    }
}

/// Serves one letter, counting it.
#[inline]
fn open<S: Serve>(state: &mut S, letter: Packed<S>, run: &mut Run<S>, ctx: &Context) {
    match letter.kind() {
        Kind::Call => run.stats.calls += 1,
        Kind::Cast => run.stats.casts += 1,
        Kind::Info => run.stats.infos += 1,
        Kind::System => {}
    }
    if run.stats.timing {
        let began = Instant::now();
        letter.open(state, &mut ServerContext { ctx, run });
        run.stats.busy += began.elapsed();
        run.stats.last_message = Some(began);
    } else {
        letter.open(state, &mut ServerContext { ctx, run });
    }
    if run.idle.is_some() {
        run.idle_armed = true;
        run.last_activity = clock::now();
    }
}

fn next<S: Serve>(run: &mut Run<S>, ctx: &Context, mailbox: &Mailbox<S>, turn: usize) -> Next<S> {
    if run.mailbox_only() && !run.suspended && run.held.is_empty() && !mailbox.bounded {
        return match take_spinning(mailbox) {
            Envelope::Letter(letter) => Next::Letter(letter),
            Envelope::Stop => Next::Again,
        };
    }
    if !run.suspended {
        if let Some(letter) = run.held.pop_front() {
            return Next::Letter(letter);
        }
    }
    // One turn each, starting from a different one each time: a flood on one (a busy
    // mailbox, an interval of a microsecond) cannot starve the others.
    for k in 0..3 {
        let found = match (turn + k) % 3 {
            0 if !run.suspended => run.timers.pop_due(clock::now()).map(Next::Letter),
            1 => from_mailbox(run, mailbox),
            2 if !run.suspended => from_sources(run, turn),
            _ => None,
        };
        if let Some(next) = found {
            return next;
        }
    }
    let deadline = if run.suspended {
        None
    } else {
        let idle = run.idle_deadline();
        if idle.is_some_and(|at| at <= clock::now()) {
            return Next::Idle;
        }
        match (run.timers.next_deadline(), idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    };
    wait(run, ctx, mailbox, deadline);
    Next::Again
}

/// The next envelope of the mailbox: spinning for a moment, then blocking.
#[inline]
fn take_spinning<S: Serve>(mailbox: &Mailbox<S>) -> Envelope<S> {
    if let Ok(envelope) = mailbox.rx.try_recv() {
        return envelope;
    }
    let mut spun_until: Option<Instant> = None;
    let mut spins = 0u32;
    loop {
        match mailbox.rx.try_recv() {
            Ok(envelope) => return envelope,
            Err(TryRecvError::Empty) => {}
            // The mailbox holds a sender itself: it never disconnects.
            Err(TryRecvError::Disconnected) => return Envelope::Stop,
        }
        spins = spins.wrapping_add(1);
        if spins % 64 == 0 {
            let now = Instant::now();
            if now >= *spun_until.get_or_insert(now + SPIN) {
                return mailbox.rx.recv().unwrap_or(Envelope::Stop);
            }
        }
        hint::spin_loop();
    }
}

/// A letter from the mailbox, if one is there; while suspended, requests other than
/// system ones are held for after the resume.
fn from_mailbox<S: Serve>(run: &mut Run<S>, mailbox: &Mailbox<S>) -> Option<Next<S>> {
    match mailbox.rx.try_recv() {
        Ok(Envelope::Letter(letter)) if run.suspended && letter.kind() != Kind::System => {
            run.held.push_back(letter);
            Some(Next::Again)
        }
        Ok(Envelope::Letter(letter)) => Some(Next::Letter(letter)),
        Ok(Envelope::Stop) => Some(Next::Again),
        Err(_) => None,
    }
}

/// A message from a watched source, if one has one (starting from a rotating one).
fn from_sources<S: Serve>(run: &mut Run<S>, turn: usize) -> Option<Next<S>> {
    let n = run.sources.len();
    for k in 0..n {
        let i = (turn + k) % n;
        match run.sources[i].try_take() {
            Taken::Letter(letter) => return Some(Next::Letter(letter)),
            Taken::Empty => {}
            Taken::Done(last) => {
                run.sources.swap_remove(i);
                return Some(last.map_or(Next::Again, Next::Letter));
            }
        }
    }
    None
}

/// Blocks until the mailbox, the stop signal (for a bounded mailbox) or a source is
/// ready, or `deadline`.
fn wait<S: Serve>(run: &Run<S>, ctx: &Context, mailbox: &Mailbox<S>, deadline: Option<Instant>) {
    let mut select = Select::new();
    select.recv(&mailbox.rx);
    if mailbox.bounded {
        select.recv(ctx.stop_signal());
    }
    if !run.suspended {
        for source in &run.sources {
            source.add_to(&mut select);
        }
    }
    match deadline {
        // On a manual clock (the test kit's), the deadline comes by an advance.
        Some(at) if clock::is_manual() => {
            let alarm = clock::alarm(at);
            select.recv(&alarm.rx);
            select.ready();
        }
        Some(at) => {
            let _ = select.ready_deadline(at);
        }
        None => {
            select.ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use crossbeam_channel::{bounded, Receiver, Sender};
    use parking_lot::Mutex;

    use crate::server::mailbox::Door;
    use crate::server::{Handle, HandleCast, Serve, ServerContext, ServerSpec};
    use crate::Supervisor;

    const DEADLINE: Duration = Duration::from_secs(10);

    struct Gated {
        log: Arc<Mutex<Vec<String>>>,
    }
    struct Block(Sender<()>, Receiver<()>);
    struct Note(u32);

    impl Serve for Gated {
        fn terminate(&mut self, _: &crate::ExitReason, _: &mut ServerContext<'_, Self>) {
            self.log.lock().push("terminate".into());
        }
    }
    impl Handle<Block> for Gated {
        type Reply = ();
        fn handle(&mut self, Block(inside, gate): Block, _: &mut ServerContext<'_, Self>) {
            let _ = inside.send(());
            let _ = gate.recv_timeout(DEADLINE);
        }
    }
    impl HandleCast<Note> for Gated {
        fn handle_cast(&mut self, Note(n): Note, _: &mut ServerContext<'_, Self>) {
            self.log.lock().push(format!("cast {n}"));
        }
    }

    /// The window between a supervisor shutting a server's door and failing what is
    /// queued, held open by hand: the loop, finishing the call it was handling, takes
    /// the queued cast first. It must drop it, not serve it behind the stop.
    #[test]
    fn a_letter_taken_after_the_door_shut_is_refused_not_served() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let for_init = log.clone();
        let (spec, server) = ServerSpec::new("gated", move |_| {
            Ok(Gated {
                log: for_init.clone(),
            })
        })
        .build();
        let sup = Supervisor::builder().start().unwrap();
        sup.start_child(spec).unwrap();
        let (inside_tx, inside) = bounded(1);
        let (gate_tx, gate) = bounded(1);
        let caller = {
            let server = server.clone();
            std::thread::spawn(move || server.call(Block(inside_tx, gate)))
        };
        inside.recv_timeout(DEADLINE).unwrap();
        server.cast(Note(1)).unwrap();
        // The supervisor's first step of a stop, and no further yet.
        let door: &AtomicU8 = &server.mailbox.door;
        door.store(Door::Stopped as u8, Ordering::SeqCst);
        gate_tx.send(()).unwrap();
        caller.join().unwrap().unwrap();
        sup.terminate_child("gated").unwrap();
        assert_eq!(
            *log.lock(),
            ["terminate"],
            "the cast was served behind the stop"
        );
    }
}
