//! An exhaustive model of the ownership protocol proposed for owned spans (docs/design.md,
//! "The next build, proposed in session 44"), checked over every interleaving before any of it
//! is built, in the manner of `tests/drain_model.rs`.
//!
//! What is modelled: one span `s` of one class, owned by slab A or by nobody, and two slabs'
//! words for the class: A's, and B's for a thread that has moved to B's CPU.
//! - The span's free list: `local` (its head and count, one word that a section commits with one
//!   store) and the link in each free object; its `owner` (A or none); A's `cur` for the class
//!   (`s` or none; B's is never `s`); and each slab's `stop` word, which only drains write and
//!   every section loads first. Only A is ever drained here, so B's stop stays clear.
//! - The **sections**, each step one load or store, as the proposal orders them. A section runs
//!   on the CPU of the slab whose words it reads; before its commit it may be **aborted** at any
//!   time and restarts, and a section step of another thread on the same CPU while a section is
//!   half done preempts (aborts) it. Each loads its slab's `stop` first and fails if it is set:
//!   - pop (on A): load `cur`, fail unless `s`; load `local`, fail if empty; load the head's
//!     link; commit `local` = (link, count - 1): the thread has the head;
//!   - push(x) (on A): load `owner`, fail unless A; load `local`; write x's link; commit `local` =
//!     (x, count + 1). A failed push is a foreign free: x goes to the span's bitmap (under the
//!     class lock, outside any section);
//!   - away (on A: the class moves to another span): commit `cur` = none;
//!   - pick (on A: the class takes `s` again): load `owner`, fail unless A; commit `cur` = `s`;
//!   - retire (the owner gives the span back; on A, or on B for a thread that moved there after
//!     deciding to): load `owner`, fail unless it is the slab the section runs on; load `cur`,
//!     fail if `s`; commit `owner` = none. Then, outside any section (the span is the thread's
//!     alone now, on whatever CPU), load `local`, hand its list to the central lists, and store
//!     `local` = empty;
//!   - collect (on A: the owner takes back what foreign frees left in the bitmap): first,
//!     outside any section (under the class lock), take every object out of the bitmap; then
//!     the section: load `owner`, fail unless A; load `local`; write the taken objects' links
//!     into a chain ending at the head; commit `local` = (first taken, count + taken). A failed
//!     collect puts the objects back into the bitmap; an aborted one restarts its section with
//!     the same objects;
//!   - turnover (on A: a kept span, wholly free and not current, turned over to another class,
//!     session 46's `reclass_oldest`; modelled in session 48): the retire section; then,
//!     outside any section, swap `local` for empty (one atomic step); then under the class lock
//!     (one step, as foreign frees and collect's take are), if every object out of the bitmap
//!     is on the list swapped out, make every object of the span free in the new class's
//!     bitmap, else hand the list to the central lists and end; then store `owner` = A (a `Pick`
//!     for the new class follows in the thread's program). The capacity lock, which in the
//!     allocator keeps turnovers, drains and the old class's picks apart, is not modelled: the
//!     model also checks turnovers against drains as the lock would not let them run. Objects
//!     and picks are not told apart by class, so a pick of the old class after the publish
//!     (which only that lock excludes) is not checked.
//! - **Foreign frees** by threads on B: the owner test fails there, so the object goes to the
//!   bitmap (one step outside any section).
//! - The **drainer** on another CPU: stop A (`stop` set), fence, load `owner`; if A: load
//!   `local`, hand its list to the central lists, store `local` = empty, `owner` = none; then
//!   `cur` = none, and restart (`stop` cleared).
//! - The **fence** (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`, which reaches every CPU
//!   running the process) as in `drain_model.rs`: it returns once every section in progress at
//!   the call, on any CPU, has committed, failed or aborted. Steps outside sections neither hold
//!   it nor preempt anything (such code may run on any CPU).
//!
//! Memory is sequentially consistent, as there. Checked in every reachable state: no object
//! held by two of the threads, the central lists and the bitmap; and A's `cur` naming `s` only
//! while A owns it or is stopped (a slab's pops test no owner, so a current span another slab
//! could own would be popped from twice). In every final state: every object in exactly one
//! place (a thread, the central lists, the bitmap, or `s`'s list, which is well formed and
//! empty unless A owns `s`), and A running again. And no state is stuck. Each mutant the tests
//! below build drops or moves one rule of the protocol, and the model finds what goes wrong
//! without it. The first is a variant of the proposal as first written, which kept the stop in
//! `cur` itself: a section that writes `cur` (away, pick) can then undo the stop.

mod model_check;

use model_check::{explore, Counterexample};

/// Object ids are 1..=OBJECTS; 0 ends a list.
const OBJECTS: usize = 5;
// Collect keeps what it took as a bitmask of object ids in a `u8`.
const _: () = assert!(OBJECTS < 8);
/// The span's list when the model starts, head first.
const INITIAL: [u8; 2] = [1, 2];

/// A's `cur` word for the class (`Stopped` only in the mutant that keeps the stop there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Cur {
    None,
    Span,
    Stopped,
}

/// What a thread does, in order: each op one critical section (retried after aborts), with
/// steps outside it before (collect's take) or after (retire's walk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Pop,
    Push(u8),
    Away,
    Pick,
    Retire,
    /// Retire run on B's CPU by a thread that decided to retire `s` on A and then moved.
    RetireOnB,
    Collect,
    /// A free of this object by a thread on B.
    Foreign(u8),
    /// The span, kept (wholly free, not current), turned over to another class by its owner
    /// (`owned::reclass_oldest`, session 46): the retire section, then, outside any section,
    /// its list taken (one swap of `local` for empty) and, under the class lock, the span made
    /// a span of the new class if every object out of its bitmap was on that list (all its
    /// objects free in its bitmap again, as carving them afresh makes them), else the list
    /// handed to the central lists; then the owner published again (a `Pick` follows in the
    /// thread's program for the new class).
    Turnover,
}
use Op::{Away, Collect, Foreign, Pick, Pop, Push, Retire, RetireOnB, Turnover};

/// One load or store of the drainer, or its fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    Stop,
    Fence,
    LoadOwner,
    LoadLocal,
    HandOut,
    ZeroLocal,
    Disown,
    ClearCur,
    Restart,
}
use Drain::*;

/// The protocol as proposed.
const PROTOCOL: &[Drain] = &[
    Stop, Fence, LoadOwner, LoadLocal, HandOut, ZeroLocal, Disown, ClearCur, Restart,
];

/// Rules a mutant leaves out or moves (all false: the protocol).
#[derive(Clone, Copy, Debug, Default)]
struct Mutant {
    /// The stop is `cur` = `Stopped` (restart: `cur` = none), not a word of its own.
    stop_in_cur: bool,
    /// The drainer takes the list whoever owns the span (no `owner` test after the fence).
    take_unowned: bool,
    /// Pop tests the stop last, just before its commit, not first.
    pop_stop_last: bool,
    pop_ignores_stop: bool,
    push_ignores_stop: bool,
    retire_ignores_stop: bool,
    collect_ignores_stop: bool,
    pick_ignores_stop: bool,
    retire_ignores_owner: bool,
    retire_ignores_cur: bool,
    collect_ignores_owner: bool,
    pick_ignores_owner: bool,
    /// Turnover makes the span a new class's without comparing its list with what is out of
    /// its bitmap (`central::reclass_owned`'s `in_use` test).
    turnover_ignores_in_use: bool,
    /// Turnover takes the list without the retire section (the span stays owned meanwhile).
    turnover_skips_retire: bool,
}

/// One step of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Load the stop of the slab the section runs on; fail if set.
    StopTest,
    /// Load `cur`; fail unless `s` (pop).
    CurIsSpan,
    /// Load `cur` of the slab the section runs on; fail if `s` (retire).
    CurIsNotSpan,
    /// Load `owner`; fail unless it is the slab the section runs on.
    OwnerIsMine,
    ReadLocal,
    /// Pop: load the link of the head loaded.
    LoadLink,
    /// Push: write the pushed object's link (the head loaded).
    WriteLink,
    /// Collect: chain the taken objects, the last linked to the head loaded.
    WriteChain,
    CommitPop,
    CommitPush,
    CommitCollect,
    CommitAway,
    CommitPick,
    CommitRetire,
    /// Outside any section: collect takes every object out of the bitmap.
    Take,
    /// Outside any section, after retire's commit: load `local`, hand it out, empty it.
    WalkLoad,
    WalkHandOut,
    WalkZero,
    /// Outside any section: a foreign free into the bitmap.
    ToBitmap,
    /// Outside any section, after turnover's retire: load `local` and store it empty (one
    /// atomic swap).
    SwapLocal,
    /// Under the class lock: the span becomes a new class's (every object in its bitmap) if
    /// no object of it is out of both the bitmap and the swapped list, else the list goes to
    /// the central lists and the op ends.
    Reclass,
    /// The owner published again: `owner` = A.
    Publish,
}
use Step::*;

/// An op's steps: before its section, the section (its last step the commit), after it.
struct Steps {
    before: Vec<Step>,
    section: Vec<Step>,
    after: Vec<Step>,
    /// The section runs on B's CPU.
    on_b: bool,
}

impl Mutant {
    fn steps(&self, op: Op) -> Steps {
        let stop = |ignored: bool| if ignored { vec![] } else { vec![StopTest] };
        let owner = |ignored: bool| if ignored { vec![] } else { vec![OwnerIsMine] };
        // The retire section, which turnover runs too.
        let retire = || {
            [
                stop(self.retire_ignores_stop),
                owner(self.retire_ignores_owner),
                if self.retire_ignores_cur {
                    vec![]
                } else {
                    vec![CurIsNotSpan]
                },
                vec![CommitRetire],
            ]
            .concat()
        };
        let (before, section, after, on_b) = match op {
            Pop if self.pop_stop_last => (
                vec![],
                vec![CurIsSpan, ReadLocal, LoadLink, StopTest, CommitPop],
                vec![],
                false,
            ),
            Pop => (
                vec![],
                [
                    stop(self.pop_ignores_stop),
                    vec![CurIsSpan, ReadLocal, LoadLink, CommitPop],
                ]
                .concat(),
                vec![],
                false,
            ),
            Push(_) => (
                vec![],
                [
                    stop(self.push_ignores_stop),
                    vec![OwnerIsMine, ReadLocal, WriteLink, CommitPush],
                ]
                .concat(),
                vec![],
                false,
            ),
            Away => (vec![], vec![StopTest, CommitAway], vec![], false),
            Pick => (
                vec![],
                [
                    stop(self.pick_ignores_stop),
                    owner(self.pick_ignores_owner),
                    vec![CommitPick],
                ]
                .concat(),
                vec![],
                false,
            ),
            Retire | RetireOnB => (
                vec![],
                retire(),
                vec![WalkLoad, WalkHandOut, WalkZero],
                op == RetireOnB,
            ),
            Collect => (
                vec![Take],
                [
                    stop(self.collect_ignores_stop),
                    owner(self.collect_ignores_owner),
                    vec![ReadLocal, WriteChain, CommitCollect],
                ]
                .concat(),
                vec![],
                false,
            ),
            Foreign(_) => (vec![ToBitmap], vec![], vec![], true),
            Turnover => (
                vec![],
                if self.turnover_skips_retire {
                    vec![]
                } else {
                    retire()
                },
                vec![SwapLocal, Reclass, Publish],
                false,
            ),
        };
        Steps {
            before,
            section,
            after,
            on_b,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Thread {
    /// Index of the op being run (== program length: done).
    op: u8,
    /// Index of the op's next step in before ++ section ++ after.
    pc: u8,
    /// The `local` this attempt loaded: its head and count.
    head: u8,
    count: u8,
    /// Pop: the link of the head it loaded.
    link: u8,
    /// Collect: the objects taken out of the bitmap (bit x), in the thread's hands.
    taken: u8,
    /// In a section when the pending fence was called.
    holds_fence: bool,
}

impl Thread {
    /// Some section step done, the commit not yet.
    fn in_section(&self, steps: &Steps) -> bool {
        let first = steps.before.len() as u8;
        self.pc > first && self.pc < first + steps.section.len() as u8
    }

    fn abort(&mut self, steps: &Steps) {
        self.pc = steps.before.len() as u8;
        self.holds_fence = false;
    }

    /// The op ended (done, or its section failed): the next op.
    fn finish(&mut self) {
        self.pc = 0;
        self.holds_fence = false;
        self.op += 1;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    /// A's stop word.
    stop: bool,
    cur: Cur,
    /// Owned by slab A (else by nobody).
    owned: bool,
    head: u8,
    count: u8,
    links: [u8; OBJECTS + 1],
    threads: Vec<Thread>,
    drain: u8,
    /// What the drainer loaded: `owner` (true: A) and `local`.
    drain_owned: bool,
    drain_head: u8,
    drain_count: u8,
    fence_called: bool,
    /// Per object: held by threads, given to the central lists, in the bitmap.
    held: [u8; OBJECTS + 1],
    central: [u8; OBJECTS + 1],
    bitmap: [u8; OBJECTS + 1],
}

struct Model<'a> {
    drainer: &'a [Drain],
    programs: &'a [&'a [Op]],
    mutant: Mutant,
}

/// The objects of the list from `head`, `count` of them, or why it is not a list.
fn walk(links: &[u8; OBJECTS + 1], head: u8, count: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut at = head;
    for _ in 0..count {
        if at == 0 || out.contains(&at) {
            return Err(format!("the list from {head} is not {count} objects long"));
        }
        out.push(at);
        at = links[at as usize];
    }
    Ok(out)
}

/// The objects whose bits are set in `mask`, lowest first.
fn bits(mask: u8) -> Vec<u8> {
    (1..=OBJECTS as u8)
        .filter(|&x| mask & 1 << x != 0)
        .collect()
}

fn owner_name(owned: bool) -> &'static str {
    if owned {
        "A"
    } else {
        "none"
    }
}

impl Model<'_> {
    fn initial(&self) -> State {
        let mut links = [0; OBJECTS + 1];
        for pair in INITIAL.windows(2) {
            links[pair[0] as usize] = pair[1];
        }
        let mut held = [0; OBJECTS + 1];
        for x in self.outside_objects() {
            held[x as usize] += 1;
        }
        let thread = Thread {
            op: 0,
            pc: 0,
            head: 0,
            count: 0,
            link: 0,
            taken: 0,
            holds_fence: false,
        };
        State {
            stop: false,
            cur: Cur::Span,
            owned: true,
            head: INITIAL[0],
            count: INITIAL.len() as u8,
            links,
            threads: vec![thread; self.programs.len()],
            drain: 0,
            drain_owned: false,
            drain_head: 0,
            drain_count: 0,
            fence_called: false,
            held,
            central: [0; OBJECTS + 1],
            bitmap: [0; OBJECTS + 1],
        }
    }

    /// The objects threads hold at the start (to push or free).
    fn outside_objects(&self) -> Vec<u8> {
        let ops = self.programs.iter().flat_map(|p| p.iter());
        ops.filter_map(|op| match *op {
            Push(x) | Foreign(x) => Some(x),
            _ => None,
        })
        .collect()
    }

    fn objects(&self) -> Vec<u8> {
        [INITIAL.to_vec(), self.outside_objects()].concat()
    }

    /// Every state one step from `s`, with the step's description.
    fn successors(&self, s: &State) -> Result<Vec<(String, State)>, String> {
        let mut out = Vec::new();
        for (t, prog) in self.programs.iter().enumerate() {
            let th = &s.threads[t];
            let Some(&op) = prog.get(th.op as usize) else {
                continue;
            };
            let steps = self.mutant.steps(op);
            if th.in_section(&steps) {
                let mut n = s.clone();
                n.threads[t].abort(&steps);
                out.push((format!("T{t} {op:?}: aborted"), n));
            }
            let all = [&steps.before[..], &steps.section, &steps.after].concat();
            let step = all[th.pc as usize];
            let in_section = (steps.before.len()..steps.before.len() + steps.section.len())
                .contains(&(th.pc as usize));
            let mut n = s.clone();
            if in_section {
                // This thread runs a section on its CPU: another's half-done section there
                // was preempted.
                for (u, other) in n.threads.iter_mut().enumerate() {
                    let Some(&o) = self.programs[u].get(other.op as usize) else {
                        continue;
                    };
                    let theirs = self.mutant.steps(o);
                    if u != t && theirs.on_b == steps.on_b && other.in_section(&theirs) {
                        other.abort(&theirs);
                    }
                }
            }
            let what = self.thread_step(&mut n, t, op, step, steps.on_b)?;
            let me = &mut n.threads[t];
            if me.op == s.threads[t].op {
                me.pc += 1;
                if me.pc as usize == all.len() {
                    me.finish();
                } else if me.pc as usize == steps.before.len() + steps.section.len() {
                    // The commit ends the section: the fence need not wait for the rest.
                    me.holds_fence = false;
                }
            }
            out.push((format!("T{t} {op:?}: {what}"), n));
        }
        if let Some(&step) = self.drainer.get(s.drain as usize) {
            let mut n = s.clone();
            n.drain += 1;
            let skip = !s.drain_owned && matches!(step, LoadLocal | HandOut | ZeroLocal | Disown);
            let in_cur = self.mutant.stop_in_cur;
            let what = match step {
                _ if skip => format!("drainer: {step:?} skipped (not A's)"),
                Stop if in_cur => {
                    n.cur = Cur::Stopped;
                    "drainer: cur = STOPPED".to_string()
                }
                Stop => {
                    n.stop = true;
                    "drainer: stop".to_string()
                }
                Fence if !s.fence_called => {
                    n.drain -= 1;
                    n.fence_called = true;
                    for (u, th) in n.threads.iter_mut().enumerate() {
                        th.holds_fence = self.programs[u]
                            .get(th.op as usize)
                            .is_some_and(|&o| th.in_section(&self.mutant.steps(o)));
                    }
                    "drainer: fence called".to_string()
                }
                Fence if s.threads.iter().any(|th| th.holds_fence) => return Ok(out),
                Fence => {
                    n.fence_called = false;
                    "drainer: fence returns".to_string()
                }
                LoadOwner => {
                    n.drain_owned = s.owned || self.mutant.take_unowned;
                    format!("drainer: loads owner = {}", owner_name(s.owned))
                }
                LoadLocal => {
                    (n.drain_head, n.drain_count) = (s.head, s.count);
                    format!("drainer: loads local = ({}, {})", s.head, s.count)
                }
                HandOut => {
                    let list = walk(&s.links, s.drain_head, s.drain_count)?;
                    for &x in &list {
                        n.central[x as usize] += 1;
                    }
                    format!("drainer: hands {list:?} to the central lists")
                }
                ZeroLocal => {
                    (n.head, n.count) = (0, 0);
                    "drainer: local = empty".to_string()
                }
                Disown => {
                    n.owned = false;
                    "drainer: owner = none".to_string()
                }
                ClearCur if in_cur => "drainer: (cur holds the stop)".to_string(),
                ClearCur => {
                    n.cur = Cur::None;
                    "drainer: cur = none".to_string()
                }
                Restart if in_cur => {
                    n.cur = Cur::None;
                    "drainer: cur = none (restart)".to_string()
                }
                Restart => {
                    n.stop = false;
                    "drainer: restart".to_string()
                }
            };
            out.push((what, n));
        }
        Ok(out)
    }

    /// Thread `t` takes `step` of `op` on `n` (a copy of the state); its description. A test
    /// that fails ends the op (`finish`), putting back what the op holds.
    fn thread_step(
        &self,
        n: &mut State,
        t: usize,
        op: Op,
        step: Step,
        on_b: bool,
    ) -> Result<String, String> {
        // B is never stopped, and its `cur` never names `s`.
        let stopped = !on_b
            && if self.mutant.stop_in_cur {
                n.cur == Cur::Stopped
            } else {
                n.stop
            };
        let cur = if on_b { Cur::None } else { n.cur };
        let mine = n.owned && !on_b;
        let fail = |n: &mut State, why: String| {
            let me = &mut n.threads[t];
            let taken = me.taken;
            me.finish();
            match op {
                Push(x) => {
                    n.held[x as usize] -= 1;
                    n.bitmap[x as usize] += 1;
                    format!("{why}, fails: {x} to the bitmap")
                }
                Collect => {
                    for x in bits(taken) {
                        n.held[x as usize] -= 1;
                        n.bitmap[x as usize] += 1;
                    }
                    format!("{why}, fails: {:?} back to the bitmap", bits(taken))
                }
                _ => format!("{why}, fails"),
            }
        };
        let me = &mut n.threads[t];
        Ok(match step {
            StopTest if stopped => fail(n, "loads the stop = set".to_string()),
            StopTest => "loads the stop = clear".to_string(),
            CurIsSpan if cur != Cur::Span => fail(n, format!("loads cur = {cur:?}")),
            CurIsSpan => "loads cur = s".to_string(),
            CurIsNotSpan if cur == Cur::Span => fail(n, "loads cur = s".to_string()),
            CurIsNotSpan => format!("loads cur = {cur:?}"),
            OwnerIsMine if !mine => fail(n, format!("loads owner = {}", owner_name(n.owned))),
            OwnerIsMine => "loads owner = A".to_string(),
            ReadLocal if op == Pop && n.count == 0 => {
                fail(n, format!("loads local = ({}, 0)", n.head))
            }
            ReadLocal => {
                (me.head, me.count) = (n.head, n.count);
                format!("loads local = ({}, {})", n.head, n.count)
            }
            LoadLink => {
                me.link = n.links[me.head as usize];
                format!("loads the link of {} = {}", me.head, me.link)
            }
            WriteLink => {
                let Push(x) = op else { unreachable!() };
                n.links[x as usize] = me.head;
                format!("writes the link of {x} = {}", me.head)
            }
            WriteChain => {
                let chain = bits(me.taken);
                let before = me.head;
                for pair in chain.windows(2) {
                    n.links[pair[0] as usize] = pair[1];
                }
                n.links[*chain.last().expect("collect took objects") as usize] = before;
                format!("links {chain:?} before {before}")
            }
            CommitPop => {
                let got = me.head;
                (n.head, n.count) = (me.link, me.count - 1);
                n.held[got as usize] += 1;
                format!("commits local = ({}, {}), has {got}", n.head, n.count)
            }
            CommitPush => {
                let Push(x) = op else { unreachable!() };
                (n.head, n.count) = (x, me.count + 1);
                n.held[x as usize] -= 1;
                format!("commits local = ({x}, {})", n.count)
            }
            CommitCollect => {
                let chain = bits(me.taken);
                (n.head, n.count) = (chain[0], me.count + chain.len() as u8);
                for &x in &chain {
                    n.held[x as usize] -= 1;
                }
                format!("commits local = ({}, {})", n.head, n.count)
            }
            CommitAway => {
                n.cur = Cur::None;
                "commits cur = none".to_string()
            }
            CommitPick => {
                n.cur = Cur::Span;
                "commits cur = s".to_string()
            }
            CommitRetire => {
                n.owned = false;
                "commits owner = none".to_string()
            }
            Take => {
                let mut taken = 0u8;
                for x in 1..=OBJECTS {
                    if n.bitmap[x] > 0 {
                        n.bitmap[x] -= 1;
                        n.held[x] += 1;
                        taken |= 1 << x;
                    }
                }
                let me = &mut n.threads[t];
                me.taken = taken;
                if taken == 0 {
                    me.finish();
                    "the bitmap is empty: nothing to collect".to_string()
                } else {
                    format!("takes {:?} out of the bitmap", bits(taken))
                }
            }
            WalkLoad => {
                (me.head, me.count) = (n.head, n.count);
                format!("loads local = ({}, {})", n.head, n.count)
            }
            WalkHandOut => {
                let list = walk(&n.links, me.head, me.count)?;
                for &x in &list {
                    n.central[x as usize] += 1;
                }
                format!("hands {list:?} to the central lists")
            }
            WalkZero => {
                (n.head, n.count) = (0, 0);
                "local = empty".to_string()
            }
            ToBitmap => {
                let Foreign(x) = op else { unreachable!() };
                n.held[x as usize] -= 1;
                n.bitmap[x as usize] += 1;
                format!("owner is not B: {x} to the bitmap")
            }
            SwapLocal => {
                (me.head, me.count) = (n.head, n.count);
                (n.head, n.count) = (0, 0);
                format!("swaps local = ({}, {}) for empty", me.head, me.count)
            }
            Reclass => {
                let list = walk(&n.links, me.head, me.count)?;
                let out: u8 = n.held.iter().sum();
                if out > 0 && !self.mutant.turnover_ignores_in_use {
                    for &x in &list {
                        n.central[x as usize] += 1;
                    }
                    n.threads[t].finish();
                    format!("{out} object(s) out: hands {list:?} to the central lists")
                } else {
                    // Every object of the span free in the new class's bitmap (the list's,
                    // and any other not there yet: carving makes the whole span's memory
                    // free objects again).
                    for x in self.objects() {
                        if n.bitmap[x as usize] == 0 {
                            n.bitmap[x as usize] = 1;
                        }
                    }
                    format!("the span is the new class's: {list:?} and the rest in its bitmap")
                }
            }
            Publish => {
                n.owned = true;
                "stores owner = A".to_string()
            }
        })
    }

    fn is_final(&self, s: &State) -> bool {
        s.drain as usize == self.drainer.len()
            && self
                .programs
                .iter()
                .zip(&s.threads)
                .all(|(p, th)| th.op as usize == p.len())
    }

    fn violation(&self, s: &State) -> Option<String> {
        for x in 1..=OBJECTS {
            if s.held[x] + s.central[x] + s.bitmap[x] > 1 {
                return Some(format!(
                    "object {x} handed out twice: {} thread(s), {} time(s) to the central lists, \
                     {} time(s) to the bitmap",
                    s.held[x], s.central[x], s.bitmap[x]
                ));
            }
        }
        if s.cur == Cur::Span && !s.owned && !s.stop {
            return Some("A's cur names s, which A does not own, and A runs".to_string());
        }
        if !self.is_final(s) {
            return None;
        }
        let list = match walk(&s.links, s.head, s.count) {
            Ok(list) => list,
            Err(e) => return Some(e),
        };
        for x in self.objects() {
            let i = x as usize;
            let in_list = list.contains(&x) as u8;
            let places = s.held[i] + s.central[i] + s.bitmap[i] + in_list;
            if places != 1 {
                return Some(format!(
                    "object {x} is in {places} places at the end (threads {}, central {}, \
                     bitmap {}, list {in_list})",
                    s.held[i], s.central[i], s.bitmap[i]
                ));
            }
        }
        if !s.owned && !list.is_empty() {
            return Some(format!(
                "objects {list:?} left in the list of a span nobody owns"
            ));
        }
        if s.stop || s.cur == Cur::Stopped {
            return Some("A is still stopped at the end".to_string());
        }
        None
    }

    /// Breadth-first over every reachable state ([`explore`]); the number of states, or the
    /// shortest run to the first violation found.
    fn check(&self) -> Result<usize, Counterexample> {
        explore(
            self.initial(),
            |s| self.successors(s),
            |s| self.violation(s),
            |s| self.is_final(s),
        )
    }
}

/// The thread programs the protocol is checked against.
const SCENARIOS: &[&[&[Op]]] = &[
    &[&[Pop], &[Pop]],
    &[&[Pop], &[Push(3)]],
    &[&[Push(3)], &[Push(4)]],
    &[&[Pop, Push(3)], &[Pop, Pop]],
    &[&[Away, Retire], &[Push(3)]],
    &[&[Away, Retire], &[Pop, Push(3)]],
    &[&[Away, Retire], &[Pick, Pop]],
    &[&[Away, Pick, Pop], &[Push(3)]],
    &[&[Pop, Away, Retire], &[Push(3), Push(4)]],
    &[&[Pop], &[RetireOnB]],
    &[&[Foreign(3), Foreign(4)], &[Collect, Pop]],
    &[&[Foreign(3)], &[Pop, Collect], &[Push(4)]],
    &[&[Foreign(3)], &[Away, Retire], &[Collect]],
    // Turnover (kept spans, session 46): against pops, a live object's free, a foreign free
    // and collect, a concurrent pick (the model does not tell the old class from the new, and
    // in the allocator the capacity lock keeps the old class's picks off the span), and a
    // turnover tried on the current span.
    &[&[Away, Turnover, Pick, Pop], &[Pop]],
    &[&[Away, Turnover, Pick], &[Push(3)]],
    &[&[Away, Turnover, Pick, Collect], &[Foreign(3)]],
    &[&[Away, Turnover, Pick], &[Pick, Pop]],
    &[&[Turnover, Pick], &[Pop, Push(3)]],
];

fn check(drainer: &[Drain], programs: &[&[Op]], mutant: Mutant) -> Result<usize, Counterexample> {
    Model {
        drainer,
        programs,
        mutant,
    }
    .check()
}

fn show(c: &Counterexample) -> String {
    format!("{}\n  {}", c.violation, c.trace.join("\n  "))
}

/// The first of [`SCENARIOS`] where `drainer` and `mutant` go wrong, with what went wrong.
fn first_failure(drainer: &[Drain], mutant: Mutant) -> Option<(usize, Counterexample)> {
    SCENARIOS
        .iter()
        .enumerate()
        .find_map(|(i, programs)| check(drainer, programs, mutant).err().map(|c| (i, c)))
}

/// What a violation's message says, by kind.
const TWICE: &str = "twice";
const LOST: &str = "places";
const STRANDED: &str = "nobody owns";
const UNOWNED_CUR: &str = "does not own";

/// Asserts that `mutant` under `drainer` goes wrong in some scenario with a violation of one
/// of `kinds`; prints and returns the counterexample.
fn must_fail(name: &str, drainer: &[Drain], mutant: Mutant, kinds: &[&str]) -> Counterexample {
    let (i, c) = first_failure(drainer, mutant).unwrap_or_else(|| panic!("{name} must go wrong"));
    println!("{name}, {:?}: {}", SCENARIOS[i], show(&c));
    assert!(
        kinds.iter().any(|k| c.violation.contains(k)),
        "{name}: {}",
        show(&c)
    );
    c
}

/// The index in `c`'s trace of the first step containing `step`.
fn at(c: &Counterexample, step: &str) -> usize {
    c.trace
        .iter()
        .position(|s| s.contains(step))
        .unwrap_or_else(|| panic!("no {step:?} in {:#?}", c.trace))
}

#[test]
fn the_proposed_protocol_never_hands_an_object_out_twice_nor_loses_one() {
    for programs in SCENARIOS {
        let states = check(PROTOCOL, programs, Mutant::default())
            .unwrap_or_else(|c| panic!("{programs:?}: {}", show(&c)));
        println!("{programs:?}: {states} states, no violation");
        assert!(states > 100, "{programs:?}: only {states} states explored");
    }
    // The sections alone, with no drain, keep every object once too.
    for programs in SCENARIOS {
        check(&[], programs, Mutant::default())
            .unwrap_or_else(|c| panic!("no drain, {programs:?}: {}", show(&c)));
    }
}

/// A variant of the proposal as first written, which kept the stop in `cur`: a class moving
/// away from the span (a section that loaded `cur` before the stop and commits after it) undoes
/// the stop, so a retire begun after the fence's call runs beside the drain.
#[test]
fn a_stop_kept_in_cur_is_undone_by_a_section_that_writes_cur() {
    let mutant = Mutant {
        stop_in_cur: true,
        ..Mutant::default()
    };
    let c = check(PROTOCOL, &[&[Away, Retire], &[Push(3)]], mutant)
        .expect_err("a stop kept in cur must go wrong");
    println!("{}", show(&c));
    assert!(c.violation.contains(TWICE), "{}", show(&c));
    assert!(at(&c, "drainer: cur = STOPPED") < at(&c, "Away: commits cur = none"));
}

#[test]
fn a_drain_without_its_fence_hands_an_object_out_twice() {
    let drainer: Vec<Drain> = PROTOCOL.iter().copied().filter(|&d| d != Fence).collect();
    must_fail("no fence", &drainer, Mutant::default(), &[TWICE]);
}

/// One fence suffices because every section loads the stop first: a pop that loads it last,
/// just before its commit, passes the stop test after the drainer's restart with a `local` it
/// loaded before the drain took the list.
#[test]
fn a_pop_that_tests_the_stop_last_hands_an_object_out_twice() {
    let mutant = Mutant {
        pop_stop_last: true,
        ..Mutant::default()
    };
    let c = must_fail("stop tested last", PROTOCOL, mutant, &[TWICE]);
    assert!(at(&c, "Pop: loads local") < at(&c, "drainer: hands"));
    assert!(at(&c, "drainer: restart") < at(&c, "Pop: loads the stop = clear"));
}

#[test]
fn a_drain_that_takes_a_retired_span_hands_its_objects_out_twice() {
    let mutant = Mutant {
        take_unowned: true,
        ..Mutant::default()
    };
    let c = must_fail("taking a retired span", PROTOCOL, mutant, &[TWICE]);
    assert!(at(&c, "Retire: commits owner = none") < at(&c, "drainer: loads owner = none"));
}

/// Every section's stop test is needed.
#[test]
fn each_section_that_ignores_the_stop_goes_wrong() {
    let with = |f: fn(&mut Mutant)| {
        let mut m = Mutant::default();
        f(&mut m);
        m
    };
    let cases: [(&str, Mutant, &[&str]); 5] = [
        ("pop", with(|m| m.pop_ignores_stop = true), &[TWICE]),
        (
            "push",
            with(|m| m.push_ignores_stop = true),
            &[LOST, STRANDED],
        ),
        ("retire", with(|m| m.retire_ignores_stop = true), &[TWICE]),
        (
            "collect",
            with(|m| m.collect_ignores_stop = true),
            &[LOST, STRANDED],
        ),
        ("pick", with(|m| m.pick_ignores_stop = true), &[UNOWNED_CUR]),
    ];
    for (name, mutant, kinds) in cases {
        must_fail(
            &format!("{name} ignoring the stop"),
            PROTOCOL,
            mutant,
            kinds,
        );
    }
}

/// Every owner test is needed: retire's catches a thread that moved to another CPU after
/// deciding to retire; collect's, a span disowned while it held the bitmap's objects; pick's,
/// a current span nobody owns.
#[test]
fn each_section_that_ignores_the_owner_goes_wrong() {
    let mutant = Mutant {
        retire_ignores_owner: true,
        ..Mutant::default()
    };
    let c = must_fail(
        "retire ignoring the owner",
        PROTOCOL,
        mutant,
        &[TWICE, UNOWNED_CUR],
    );
    assert!(c
        .trace
        .iter()
        .any(|s| s.contains("RetireOnB: commits owner = none")));
    let mutant = Mutant {
        collect_ignores_owner: true,
        ..Mutant::default()
    };
    let c = must_fail("collect ignoring the owner", PROTOCOL, mutant, &[STRANDED]);
    assert!(at(&c, "owner = none") < at(&c, "Collect: commits local"));
    let mutant = Mutant {
        pick_ignores_owner: true,
        ..Mutant::default()
    };
    must_fail("pick ignoring the owner", PROTOCOL, mutant, &[UNOWNED_CUR]);
}

/// Turnover's test under the class lock (every object out of the bitmap on the list it took)
/// is what keeps a live object from becoming a free object of the new class.
#[test]
fn a_turnover_that_ignores_what_is_out_hands_an_object_out_twice() {
    let mutant = Mutant {
        turnover_ignores_in_use: true,
        ..Mutant::default()
    };
    let c = must_fail("turnover ignoring in_use", PROTOCOL, mutant, &[TWICE]);
    assert!(at(&c, "Pop: commits local") < at(&c, "Turnover: the span is the new class's"));
}

/// Turnover's retire section (its stop test and its owner store) is what keeps a drain and the
/// owner's pushes off the list it takes: without it a drain that loaded the list before the
/// swap hands it to the central lists while the new class's bitmap holds the same objects,
/// and, with no drain, a push committed after the swap lands on a list the bitmap also holds.
#[test]
fn a_turnover_without_the_retire_section_hands_an_object_out_twice() {
    let mutant = Mutant {
        turnover_skips_retire: true,
        ..Mutant::default()
    };
    let c = must_fail("turnover without the retire", PROTOCOL, mutant, &[TWICE]);
    assert!(at(&c, "drainer: loads local") < at(&c, "Turnover: swaps local"));
    assert!(at(&c, "Turnover: the span is the new class's") < at(&c, "drainer: hands"));
    let c = must_fail(
        "turnover without the retire, no drain",
        &[],
        mutant,
        &[TWICE, LOST],
    );
    assert!(at(&c, "Turnover: swaps local") < at(&c, "Push(3): commits local"));
}

/// Retire's `cur` test keeps the current span from being given back while pops use it.
#[test]
fn a_retire_of_the_current_span_goes_wrong() {
    let mutant = Mutant {
        retire_ignores_cur: true,
        ..Mutant::default()
    };
    let c = must_fail("retire ignoring cur", &[], mutant, &[TWICE, UNOWNED_CUR]);
    assert!(c
        .trace
        .iter()
        .any(|s| s.contains("Retire: loads owner = A")));
}

/// The drainer's order matters: the owner cleared before the restart, `cur` cleared at all and
/// before the restart.
#[test]
fn a_drain_that_restarts_too_early_or_leaves_cur_goes_wrong() {
    let restart_before_disown = [
        Stop, Fence, LoadOwner, LoadLocal, HandOut, ZeroLocal, ClearCur, Restart, Disown,
    ];
    let none = Mutant::default();
    must_fail(
        "restart before the disown",
        &restart_before_disown,
        none,
        &[STRANDED, LOST],
    );
    let no_clear: Vec<Drain> = PROTOCOL
        .iter()
        .copied()
        .filter(|&d| d != ClearCur)
        .collect();
    must_fail("no cur cleared", &no_clear, none, &[UNOWNED_CUR]);
    let clear_after_restart = [
        Stop, Fence, LoadOwner, LoadLocal, HandOut, ZeroLocal, Disown, Restart, ClearCur,
    ];
    must_fail(
        "cur cleared after the restart",
        &clear_after_restart,
        none,
        &[UNOWNED_CUR],
    );
}
