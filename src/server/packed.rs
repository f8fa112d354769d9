//! A letter packed into its envelope: stored inline when it fits in three words (most
//! calls and casts: a small message and a reply token), boxed otherwise — so that a
//! mailbox takes letters of any type without an allocation per message.
//!
//! Why `unsafe`: the mailbox carries letters of many types in one channel, so each is
//! type-erased. `Box<dyn Letter>` does that safely but costs an allocation per message,
//! freed on the server's thread: under a cast flood, glibc's `malloc` and cross-thread
//! `free` were a quarter of the time (perf), and a cast cost twice what it did with one
//! message type. Here a letter's bytes are written into the envelope itself and read
//! back, exactly once, by the function made for its type (`Ops`). The invariants:
//! `bytes` holds a valid `L` from `pack` until one of `open`, `refuse`, `into_any` or
//! `drop` reads it out; each of those runs at most once (they take `self`, and `Drop`
//! does not run after them); `L` fits `bytes` in size and alignment (checked in `pack`,
//! else `L` is boxed and the box, one word, is what is stored).

use std::any::Any;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::ptr;

use crate::server::callbacks::Serve;
use crate::server::context::ServerContext;
use crate::server::error::CallError;
use crate::server::letter::{Kind, Letter};

/// Room for a letter stored inline.
type Bytes = MaybeUninit<[usize; 3]>;

/// What can be done with a packed letter of one type, made once per type.
struct Ops<S: Serve> {
    kind: Kind,
    open: unsafe fn(&mut Bytes, &mut S, &mut ServerContext<'_, S>),
    refuse: unsafe fn(&mut Bytes, CallError),
    into_any: unsafe fn(&mut Bytes) -> Box<dyn Any>,
    drop: unsafe fn(&mut Bytes),
}

trait HasOps<S: Serve> {
    const OPS: Ops<S>;
}

impl<S: Serve, L: Letter<S>> HasOps<S> for L {
    const OPS: Ops<S> = Ops {
        kind: L::KIND,
        open: open::<S, L>,
        refuse: refuse::<S, L>,
        into_any: into_any::<S, L>,
        drop: drop_letter::<L>,
    };
}

/// A letter, inline or boxed, with what to do with it. It is `Send` (its fields are),
/// which holds for its letter too: `pack` takes only letters, and a letter is `Send`.
pub(super) struct Packed<S: Serve> {
    bytes: Bytes,
    ops: &'static Ops<S>,
}

/// A letter too big to store inline, boxed (the box is stored inline).
struct Boxed<L>(Box<L>);

impl<S: Serve, L: Letter<S>> Letter<S> for Boxed<L> {
    const KIND: Kind = L::KIND;
    fn open(self, state: &mut S, ctx: &mut ServerContext<'_, S>) {
        (*self.0).open(state, ctx);
    }
    fn refuse(self, why: CallError) {
        (*self.0).refuse(why);
    }
    fn into_any(self) -> Box<dyn Any> {
        (*self.0).into_any()
    }
}

impl<S: Serve> Packed<S> {
    /// Packs `letter`: inline if it fits, else boxed.
    #[inline]
    pub(super) fn pack<L: Letter<S>>(letter: L) -> Packed<S> {
        if fits::<L>() {
            Packed::inline(letter)
        } else {
            Packed::inline(Boxed(Box::new(letter)))
        }
    }

    #[inline]
    fn inline<L: Letter<S>>(letter: L) -> Packed<S> {
        assert!(fits::<L>(), "only called for letters that fit");
        let mut bytes = Bytes::uninit();
        // SAFETY: `bytes` is large and aligned enough for an `L` (asserted above; for
        // constant sizes the assertion compiles away); it is written once, here, and
        // `OPS` for `L` is what reads it back.
        unsafe { ptr::write(bytes.as_mut_ptr().cast::<L>(), letter) };
        Packed {
            bytes,
            ops: &<L as HasOps<S>>::OPS,
        }
    }

    pub(super) fn kind(&self) -> Kind {
        self.ops.kind
    }

    /// Serves the letter.
    #[inline]
    pub(super) fn open(self, state: &mut S, ctx: &mut ServerContext<'_, S>) {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `bytes` holds the letter `ops` was made for, not yet read out; `me` is
        // not dropped, so it is read out only here.
        unsafe { (me.ops.open)(&mut me.bytes, state, ctx) }
    }

    /// Not served: its caller, if it has one, is told `why`.
    pub(super) fn refuse(self, why: CallError) {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: as in `open`.
        unsafe { (me.ops.refuse)(&mut me.bytes, why) }
    }

    /// The letter itself, to give a message back to its sender (`try_cast`).
    pub(super) fn into_any(self) -> Box<dyn Any> {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: as in `open`.
        unsafe { (me.ops.into_any)(&mut me.bytes) }
    }
}

impl<S: Serve> Drop for Packed<S> {
    fn drop(&mut self) {
        // SAFETY: `bytes` still holds its letter: the methods that read it out do not
        // let `Drop` run.
        unsafe { (self.ops.drop)(&mut self.bytes) }
    }
}

/// Whether an `L` fits in `Bytes`.
const fn fits<L>() -> bool {
    mem::size_of::<L>() <= mem::size_of::<Bytes>()
        && mem::align_of::<L>() <= mem::align_of::<Bytes>()
}

/// Reads the `L` out of `bytes`.
///
/// # Safety
///
/// `bytes` holds a valid `L`, which nothing reads out again afterwards.
unsafe fn take<L>(bytes: &mut Bytes) -> L {
    // SAFETY: the caller's promise.
    unsafe { ptr::read(bytes.as_ptr().cast::<L>()) }
}

unsafe fn open<S: Serve, L: Letter<S>>(
    bytes: &mut Bytes,
    state: &mut S,
    ctx: &mut ServerContext<'_, S>,
) {
    // SAFETY: called once, through `OPS` of `L`, on bytes `pack` wrote an `L` into.
    unsafe { take::<L>(bytes) }.open(state, ctx);
}

unsafe fn refuse<S: Serve, L: Letter<S>>(bytes: &mut Bytes, why: CallError) {
    // SAFETY: as in `open`.
    unsafe { take::<L>(bytes) }.refuse(why);
}

unsafe fn into_any<S: Serve, L: Letter<S>>(bytes: &mut Bytes) -> Box<dyn Any> {
    // SAFETY: as in `open`.
    unsafe { take::<L>(bytes) }.into_any()
}

unsafe fn drop_letter<L>(bytes: &mut Bytes) {
    // SAFETY: as in `open`.
    drop(unsafe { take::<L>(bytes) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::letter::CastLetter;
    use crate::server::HandleCast;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Sink;
    impl Serve for Sink {}
    impl<T: Send + 'static> HandleCast<T> for Sink {
        fn handle_cast(&mut self, _: T, _: &mut ServerContext<'_, Self>) {}
    }

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>, [u64; 8]);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn small_letters_are_inline_and_big_ones_boxed_each_dropped_once() {
        assert!(fits::<CastLetter<u64>>());
        assert!(!fits::<CastLetter<Counted>>());
        let drops = Arc::new(AtomicUsize::new(0));
        let small = Arc::new(AtomicUsize::new(0));
        drop(Packed::<Sink>::pack(CastLetter(Counted(
            drops.clone(),
            [0; 8],
        ))));
        drop(Packed::<Sink>::pack(CastLetter(small.clone())));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(
            Arc::strong_count(&small),
            1,
            "the inline one was dropped too"
        );
    }

    #[test]
    fn a_letter_comes_back_whole() {
        let packed = Packed::<Sink>::pack(CastLetter(String::from("back")));
        let any = packed.into_any();
        let cast = any.downcast::<CastLetter<String>>().ok().unwrap();
        assert_eq!(cast.0, "back");
        let drops = Arc::new(AtomicUsize::new(0));
        let big = Packed::<Sink>::pack(CastLetter(Counted(drops.clone(), [7; 8])));
        let back = big
            .into_any()
            .downcast::<CastLetter<Counted>>()
            .ok()
            .unwrap();
        assert_eq!((back.0).1, [7; 8]);
        drop(back);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
