//! OTP's `sys` tools for a running server: read or change its state, its statistics,
//! suspend and resume — each a system request served by its loop between messages
//! (also while suspended).

use std::time::{Duration, Instant};

use crate::server::callbacks::Serve;
use crate::server::context::ServerContext;
use crate::server::error::CallError;
use crate::server::handle::{ServerRef, DEFAULT_CALL_TIMEOUT};
use crate::server::letter::SystemLetter;
use crate::server::packed::Packed;
use crate::server::reply::reply_slot;

/// A server's statistics (OTP's `sys:statistics`), from its current incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistics {
    /// Calls served.
    pub calls: u64,
    /// Casts served.
    pub casts: u64,
    /// Infos served: sent, from timers, from watched channels, monitors' `Down`s.
    pub infos: u64,
    /// Requests waiting in the mailbox (and held while suspended).
    pub queued: usize,
    /// Timers pending.
    pub timers: usize,
    /// Channels watched and monitors held.
    pub sources: usize,
    /// Whether it is suspended.
    pub suspended: bool,
    /// Time spent in handlers since timing was turned on
    /// ([`ServerRef::time_handlers`]); `None` while it is off.
    pub busy: Option<Duration>,
    /// When the latest message began to be served, while timing is on.
    pub last_message: Option<Instant>,
}

impl<S: Serve> ServerRef<S> {
    /// Runs `f` on the server's state, between its messages, and returns what it returns
    /// (OTP's `sys:get_state`, as a function of the state).
    ///
    /// # Errors
    ///
    /// As [`call`](ServerRef::call); a panic in `f` crashes the server, as in any
    /// callback.
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::server::{Handle, Serve, ServerContext, ServerSpec};
    /// use steadfast::Supervisor;
    ///
    /// struct Counter(u64);
    /// impl Serve for Counter {}
    /// impl Handle<u64> for Counter {
    ///     type Reply = ();
    ///     fn handle(&mut self, n: u64, _: &mut ServerContext<'_, Self>) {
    ///         self.0 += n;
    ///     }
    /// }
    ///
    /// let (spec, counter) = ServerSpec::new("counter", |_| Ok(Counter(0))).build();
    /// let sup = Supervisor::builder().child(spec).start()?;
    /// counter.call(2)?;
    /// assert_eq!(counter.get_state(|c| c.0)?, 2);
    /// counter.replace_state(|c| c.0 = 40)?;
    /// counter.call(2)?;
    /// assert_eq!(counter.get_state(|c| c.0)?, 42);
    /// assert_eq!(counter.statistics()?.calls, 2);
    /// # drop(sup);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> T + Send + 'static,
    ) -> Result<T, CallError> {
        self.system(move |state, _| f(state))
    }

    /// Changes the server's state with `f`, between its messages (OTP's
    /// `sys:replace_state`), and returns what `f` returns.
    ///
    /// # Errors
    ///
    /// As [`get_state`](ServerRef::get_state).
    pub fn replace_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> Result<T, CallError> {
        self.system(move |state, _| f(state))
    }

    /// The server's [`Statistics`].
    ///
    /// # Errors
    ///
    /// As [`call`](ServerRef::call).
    pub fn statistics(&self) -> Result<Statistics, CallError> {
        let queued = self.queued();
        self.system(move |_, ctx| {
            let run = &ctx.run;
            Statistics {
                calls: run.stats.calls,
                casts: run.stats.casts,
                infos: run.stats.infos,
                queued: queued + run.held.len(),
                timers: run.timers.len(),
                sources: run.sources.len(),
                suspended: run.suspended,
                busy: run.stats.timing.then_some(run.stats.busy),
                last_message: run.stats.last_message,
            }
        })
    }

    /// Turns the timing of handlers on or off (off by default: it reads the clock
    /// twice per message).
    ///
    /// # Errors
    ///
    /// As [`call`](ServerRef::call).
    pub fn time_handlers(&self, on: bool) -> Result<(), CallError> {
        self.system(move |_, ctx| {
            ctx.run.stats.timing = on;
            if !on {
                ctx.run.stats.busy = Duration::ZERO;
                ctx.run.stats.last_message = None;
            }
        })
    }

    /// Suspends the server (OTP's `sys:suspend`): until [`resume`](ServerRef::resume),
    /// it serves only system requests; calls, casts and infos wait (a call within its
    /// timeout), timers and watched channels wait too. A stop is served at once.
    ///
    /// # Errors
    ///
    /// As [`call`](ServerRef::call).
    pub fn suspend(&self) -> Result<(), CallError> {
        self.system(|_, ctx| ctx.run.suspended = true)
    }

    /// Resumes a suspended server: what waited is served, in the order it arrived.
    ///
    /// # Errors
    ///
    /// As [`call`](ServerRef::call).
    pub fn resume(&self) -> Result<(), CallError> {
        self.system(|_, ctx| ctx.run.suspended = false)
    }

    fn system<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S, &mut ServerContext<'_, S>) -> T + Send + 'static,
    ) -> Result<T, CallError> {
        let (reply, waiter) = reply_slot();
        let letter = Packed::pack(SystemLetter { f, reply });
        self.request(letter, waiter, DEFAULT_CALL_TIMEOUT)
    }
}
