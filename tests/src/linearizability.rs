//! A linearizability checker: the Wing–Gong search with Lowe's memoization (as in Knossos and
//! Porcupine), P-compositional per key.
//!
//! A history is a list of [`Operation`]s, each with the time its client called it and the time
//! it returned. It is *linearizable* if every operation can be given one instant between its
//! call and its return such that, taken in the order of those instants, the operations are a
//! legal sequential run of the [`Model`]. An operation whose outcome is unknown (the client
//! timed out) may have taken effect at any time after its call, or never: it has no return
//! time and any output.
//!
//! The search ([`check`]) walks the history in time order. At a call it tries to make that
//! operation the next one in the linearization: legal in the model, and not leading to a
//! (set of linearized operations, model state) pair already explored (the memo that makes the
//! search practical). At a return whose operation is not yet linearized, the current choice
//! cannot work: it undoes the last choice and tries the next candidate. The history is
//! linearizable when every operation that returned has been placed.
//!
//! Checking each key alone is enough for a key-value store whose operations touch one key
//! each (linearizability is compositional, Herlihy and Wing 1990), and much faster:
//! [`check_kv`] splits the history by key. A failure is printed as the key's operations in
//! time order, with the longest linearization found and the operations that could not follow
//! it ([`Violation`]'s `Display`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + fmt::Debug;
    type Input: fmt::Debug;
    type Output: fmt::Debug;

    fn init(&self) -> Self::State;

    /// The state after `input` ran in `state` and returned `output`, or `None` if it could not
    /// have returned that. `output` is `None` when the outcome is unknown: then any output is
    /// possible and only the effect matters.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One client operation as the test recorded it.
#[derive(Debug, Clone)]
pub struct Operation<I, O> {
    pub client: u64,
    pub input: I,
    /// When the client called it (any monotonic unit, e.g. nanoseconds since the test began).
    pub call: u64,
    /// What it returned and when; `None` if the outcome is unknown (timed out, connection
    /// lost): it may have taken effect at any time after `call`, or never.
    pub completion: Option<(O, u64)>,
}

/// The verdict on a history that is not linearizable.
#[derive(Debug)]
pub struct Violation {
    /// What was checked, e.g. the key.
    pub scope: String,
    /// The operations of that scope, rendered, in call order.
    pub operations: Vec<String>,
    /// The longest linearization found: indexes into `operations`.
    pub longest: Vec<usize>,
    /// Operations that had returned and that could not come next after `longest`.
    pub stuck: Vec<usize>,
    /// The search gave up after its step budget: no verdict either way.
    pub undecided: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.undecided {
            writeln!(
                f,
                "{}: the search exceeded its step budget; no verdict (shorten the run)",
                self.scope
            )?;
        } else {
            writeln!(f, "{}: not linearizable", self.scope)?;
        }
        writeln!(
            f,
            "  operations in call order (client, [call, return], op -> result):"
        )?;
        for (i, op) in self.operations.iter().enumerate() {
            writeln!(f, "    #{i:<4} {op}")?;
        }
        let longest: Vec<String> = self.longest.iter().map(|i| format!("#{i}")).collect();
        writeln!(
            f,
            "  longest linearization found ({} of {}): {}",
            self.longest.len(),
            self.operations.len(),
            longest.join(" ")
        )?;
        let stuck: Vec<String> = self.stuck.iter().map(|i| format!("#{i}")).collect();
        write!(f, "  none of these could come next: {}", stuck.join(" "))
    }
}

/// Search steps allowed per checked scope before giving up with an undecided verdict.
pub const SEARCH_STEPS_MAX: u64 = 50_000_000;

/// A node of the doubly linked list of call and return events (dancing links: a removed
/// node keeps its own links, so it can be put back in O(1)).
#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
    /// For a call: the index of its return event (or `NONE` for an unknown outcome).
    ret: usize,
}

const NONE: usize = usize::MAX;
const HEAD: usize = 0;

/// Checks one history against `model`; `scope` names it in a violation.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    scope: &str,
) -> Result<(), Violation> {
    let n = history.len();
    // Events sorted by time; at equal times calls come first (an operation that returns at t
    // overlaps one called at t).
    let mut times: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in history.iter().enumerate() {
        times.push((op.call, true, i));
        if let Some((_, at)) = &op.completion {
            assert!(*at >= op.call, "operation {i} returns before it is called");
            times.push((*at, false, i));
        }
    }
    times.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    // events[0] is the list head.
    let mut events = vec![Event {
        op: NONE,
        is_call: false,
        prev: NONE,
        next: NONE,
        ret: NONE,
    }];
    let mut call_of = vec![NONE; n];
    let mut ret_of = vec![NONE; n];
    for &(_, is_call, op) in &times {
        let id = events.len();
        let prev = id - 1;
        events[prev].next = id;
        events.push(Event {
            op,
            is_call,
            prev,
            next: NONE,
            ret: NONE,
        });
        if is_call {
            call_of[op] = id;
        } else {
            ret_of[op] = id;
        }
    }
    for op in 0..n {
        events[call_of[op]].ret = ret_of[op];
    }
    let returned = history.iter().filter(|op| op.completion.is_some()).count();

    let lift = |events: &mut Vec<Event>, id: usize| {
        let Event { prev, next, .. } = events[id];
        events[prev].next = next;
        if next != NONE {
            events[next].prev = prev;
        }
    };
    let unlift = |events: &mut Vec<Event>, id: usize| {
        let Event { prev, next, .. } = events[id];
        events[prev].next = id;
        if next != NONE {
            events[next].prev = id;
        }
    };

    let mut state = model.init();
    let mut placed_returned = 0;
    let mut memo: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut bits = vec![0u64; n.div_ceil(64)];
    // (call event, state before) of each linearized operation, in order.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut stuck_at_longest: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    let mut entry = events[HEAD].next;
    loop {
        if placed_returned == returned {
            return Ok(());
        }
        steps += 1;
        if steps > SEARCH_STEPS_MAX {
            return Err(violation(history, scope, &longest, &stuck_at_longest, true));
        }
        // At the end of the list (only unknown-outcome calls were left, and none could go)
        // or at the return of an operation not yet placed, the choices made so far cannot
        // work: undo the last one and try what follows it.
        if entry == NONE || !events[entry].is_call {
            let Some((next, before, was_returned)) =
                backtrack(&mut stack, &mut events, &mut bits, history, &unlift)
            else {
                return Err(violation(
                    history,
                    scope,
                    &longest,
                    &stuck_at_longest,
                    false,
                ));
            };
            state = before;
            placed_returned -= usize::from(was_returned);
            entry = next;
            continue;
        }
        let e = events[entry];
        let op = &history[e.op];
        let output = op.completion.as_ref().map(|(o, _)| o);
        if let Some(next_state) = model.step(&state, &op.input, output) {
            bits[e.op / 64] |= 1 << (e.op % 64);
            if memo.insert((bits.clone(), next_state.clone())) {
                stack.push((entry, state));
                state = next_state;
                placed_returned += usize::from(op.completion.is_some());
                lift(&mut events, entry);
                if e.ret != NONE {
                    lift(&mut events, e.ret);
                }
                if stack.len() > longest.len() {
                    longest = stack.iter().map(|&(c, _)| events[c].op).collect();
                    stuck_at_longest = candidates(&events, history);
                }
                entry = events[HEAD].next;
                continue;
            }
            bits[e.op / 64] &= !(1 << (e.op % 64));
        }
        entry = e.next;
    }
}

/// Undoes the last linearized operation: puts its events back and returns the event after its
/// call (where the search goes on), the state before it, and whether it had returned.
fn backtrack<I, O, S>(
    stack: &mut Vec<(usize, S)>,
    events: &mut Vec<Event>,
    bits: &mut [u64],
    history: &[Operation<I, O>],
    unlift: &impl Fn(&mut Vec<Event>, usize),
) -> Option<(usize, S, bool)> {
    let (call, before) = stack.pop()?;
    let e = events[call];
    if e.ret != NONE {
        unlift(events, e.ret);
    }
    unlift(events, call);
    bits[e.op / 64] &= !(1 << (e.op % 64));
    Some((e.next, before, history[e.op].completion.is_some()))
}

/// The operations that could be tried next from the list's current head: every call before
/// the first return.
fn candidates<I, O>(events: &[Event], history: &[Operation<I, O>]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut id = events[HEAD].next;
    while id != NONE {
        let e = events[id];
        if !e.is_call {
            out.push(e.op);
            break;
        }
        if history[e.op].completion.is_some() {
            out.push(e.op);
        }
        id = e.next;
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn violation<I: fmt::Debug, O: fmt::Debug>(
    history: &[Operation<I, O>],
    scope: &str,
    longest: &[usize],
    stuck: &[usize],
    undecided: bool,
) -> Violation {
    // Render in call order, renumbering the indexes to match.
    let mut order: Vec<usize> = (0..history.len()).collect();
    order.sort_by_key(|&i| (history[i].call, i));
    let mut position = vec![0; history.len()];
    for (p, &i) in order.iter().enumerate() {
        position[i] = p;
    }
    let operations = order
        .iter()
        .map(|&i| {
            let op = &history[i];
            match &op.completion {
                Some((output, at)) => format!(
                    "client {:<3} [{}, {}] {:?} -> {:?}",
                    op.client,
                    ms(op.call),
                    ms(*at),
                    op.input,
                    output
                ),
                None => format!(
                    "client {:<3} [{}, ?] {:?} -> unknown (timed out)",
                    op.client,
                    ms(op.call),
                    op.input
                ),
            }
        })
        .collect();
    Violation {
        scope: scope.to_string(),
        operations,
        longest: longest.iter().map(|&i| position[i]).collect(),
        stuck: stuck.iter().map(|&i| position[i]).collect(),
        undecided,
    }
}

/// Nanoseconds as milliseconds with three decimals.
fn ms(ns: u64) -> String {
    format!("{}.{:03}ms", ns / 1_000_000, ns / 1_000 % 1_000)
}

// ----- A key-value register ------------------------------------------------------------

/// What a client did to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvInput {
    Get,
    Put(Vec<u8>),
    Delete,
    /// Compare-and-set: `new` replaces the value (`None` deletes) if it is `expect`.
    Cas {
        expect: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
    /// Adds to a 64-bit counter stored as its decimal text (a missing key is 0).
    Incr(i64),
}

/// What the store answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutput {
    Value(Option<Vec<u8>>),
    Ok,
    /// For `Cas`: whether it applied. For `Delete`: whether the key existed.
    Applied(bool),
    Counter(i64),
}

/// One key of a key-value store: its value, or none.
#[derive(Debug, Clone, Copy, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = Option<Vec<u8>>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Self::State,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Self::State> {
        let (next, answer) = match input {
            KvInput::Get => (state.clone(), KvOutput::Value(state.clone())),
            KvInput::Put(v) => (Some(v.clone()), KvOutput::Ok),
            KvInput::Delete => (None, KvOutput::Applied(state.is_some())),
            KvInput::Cas { expect, new } => {
                if state == expect {
                    (new.clone(), KvOutput::Applied(true))
                } else {
                    (state.clone(), KvOutput::Applied(false))
                }
            }
            KvInput::Incr(by) => {
                let current = match state {
                    None => 0,
                    Some(v) => std::str::from_utf8(v).ok()?.parse::<i64>().ok()?,
                };
                let n = current.checked_add(*by)?;
                (Some(n.to_string().into_bytes()), KvOutput::Counter(n))
            }
        };
        match output {
            Some(seen) if *seen != answer => None,
            _ => Some(next),
        }
    }
}

/// A key-value operation with its key.
pub type KvOperation = (Vec<u8>, Operation<KvInput, KvOutput>);

/// Checks a key-value history one key at a time. Returns every key's violation.
pub fn check_kv(history: &[KvOperation]) -> Result<(), Vec<Violation>> {
    let mut by_key: BTreeMap<&[u8], Vec<Operation<KvInput, KvOutput>>> = BTreeMap::new();
    for (key, op) in history {
        by_key.entry(key).or_default().push(op.clone());
    }
    let violations: Vec<Violation> = by_key
        .into_iter()
        .filter_map(|(key, ops)| {
            let scope = format!("key {:?}", String::from_utf8_lossy(key));
            check(&KvModel, &ops, &scope).err()
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, input: KvInput, call: u64, output: KvOutput, ret: u64) -> KvOperation {
        (
            b"k".to_vec(),
            Operation {
                client,
                input,
                call,
                completion: Some((output, ret)),
            },
        )
    }

    fn unknown(client: u64, input: KvInput, call: u64) -> KvOperation {
        (
            b"k".to_vec(),
            Operation {
                client,
                input,
                call,
                completion: None,
            },
        )
    }

    fn put(v: &str) -> KvInput {
        KvInput::Put(v.as_bytes().to_vec())
    }
    fn value(v: Option<&str>) -> KvOutput {
        KvOutput::Value(v.map(|v| v.as_bytes().to_vec()))
    }

    #[test]
    fn sequential_histories_are_checked_against_the_model() {
        let good = vec![
            op(1, put("a"), 0, KvOutput::Ok, 10),
            op(1, KvInput::Get, 20, value(Some("a")), 30),
            op(1, KvInput::Incr(5), 40, KvOutput::Counter(5), 50),
        ];
        // "a" is not a number: the increment cannot have returned 5.
        assert!(check_kv(&good).is_err());
        let good = vec![
            op(1, KvInput::Incr(5), 0, KvOutput::Counter(5), 10),
            op(1, KvInput::Incr(-2), 20, KvOutput::Counter(3), 30),
            op(
                1,
                KvInput::Cas {
                    expect: Some(b"3".to_vec()),
                    new: None,
                },
                40,
                KvOutput::Applied(true),
                50,
            ),
            op(1, KvInput::Get, 60, value(None), 70),
        ];
        assert!(check_kv(&good).is_ok());
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // Two overlapping writes; later reads see the one that went second.
        let h = vec![
            op(1, put("a"), 0, KvOutput::Ok, 100),
            op(2, put("b"), 10, KvOutput::Ok, 90),
            op(3, KvInput::Get, 110, value(Some("a")), 120),
            op(4, KvInput::Get, 130, value(Some("a")), 140),
        ];
        assert!(check_kv(&h).is_ok());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught_and_printed() {
        let h = vec![
            op(1, put("a"), 0, KvOutput::Ok, 10),
            op(2, put("b"), 20, KvOutput::Ok, 30),
            // Called after "b" was acknowledged, yet it sees "a".
            op(3, KvInput::Get, 40, value(Some("a")), 50),
        ];
        let violations = check_kv(&h).unwrap_err();
        assert_eq!(violations.len(), 1);
        let text = violations[0].to_string();
        assert!(text.contains("not linearizable"), "{text}");
        assert!(
            text.contains("longest linearization found (2 of 3)"),
            "{text}"
        );
        assert!(text.contains("none of these could come next: #2"), "{text}");
    }

    #[test]
    fn reads_may_not_go_back_in_time() {
        // Two reads during one write: the first sees the new value, the second, called after
        // the first returned, the old one. Each alone is fine; together they are not.
        let h = vec![
            op(1, put("b"), 0, KvOutput::Ok, 100),
            op(2, KvInput::Get, 10, value(Some("b")), 20),
            op(3, KvInput::Get, 30, value(None), 40),
        ];
        assert!(check_kv(&h).is_err());
        let h = vec![
            op(1, put("b"), 0, KvOutput::Ok, 100),
            op(2, KvInput::Get, 10, value(None), 20),
            op(3, KvInput::Get, 30, value(Some("b")), 40),
        ];
        assert!(check_kv(&h).is_ok());
    }

    #[test]
    fn an_unknown_outcome_may_have_happened_late_or_never() {
        // The write timed out; a read long after sees it: it took effect late.
        let late = vec![
            unknown(1, put("a"), 0),
            op(2, KvInput::Get, 1000, value(None), 1010),
            op(3, KvInput::Get, 2000, value(Some("a")), 2010),
        ];
        assert!(check_kv(&late).is_ok());
        // Or never.
        let never = vec![
            unknown(1, put("a"), 0),
            op(2, KvInput::Get, 1000, value(None), 1010),
        ];
        assert!(check_kv(&never).is_ok());
        // But not before it was called.
        let before = vec![
            op(2, KvInput::Get, 0, value(Some("a")), 10),
            unknown(1, put("a"), 20),
        ];
        assert!(check_kv(&before).is_err());
        // Nor undone once seen.
        let undone = vec![
            unknown(1, put("a"), 0),
            op(2, KvInput::Get, 10, value(Some("a")), 20),
            op(3, KvInput::Get, 30, value(None), 40),
        ];
        assert!(check_kv(&undone).is_err());
    }

    #[test]
    fn a_retried_increment_applied_twice_is_caught() {
        // One client's increment, retried after a timeout, must apply once.
        let h = vec![
            op(1, KvInput::Incr(1), 0, KvOutput::Counter(1), 50),
            op(2, KvInput::Get, 60, value(Some("2")), 70),
        ];
        assert!(check_kv(&h).is_err());
    }

    #[test]
    fn keys_are_checked_apart_and_each_violation_names_its_key() {
        let mut h = vec![
            op(1, put("a"), 0, KvOutput::Ok, 10),
            op(2, KvInput::Get, 20, value(None), 30),
        ];
        h[1].0 = b"other".to_vec();
        assert!(
            check_kv(&h).is_ok(),
            "a missing value on another key is fine"
        );
        h.push((
            b"other".to_vec(),
            Operation {
                client: 3,
                input: KvInput::Get,
                call: 40,
                completion: Some((value(Some("zzz")), 50)),
            },
        ));
        let violations = check_kv(&h).unwrap_err();
        assert_eq!(violations.len(), 1);
        assert!(violations[0].scope.contains("other"));
    }

    /// A random register history generated from a real sequential run with random overlaps
    /// is always linearizable; changing one read's result almost always breaks it. Checks
    /// the search on longer histories than the hand-written ones.
    #[test]
    fn generated_histories_pass_and_tampered_ones_fail() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut caught = 0;
        for _ in 0..200 {
            // A sequential run: op i takes effect at instant 100*i + 50; its call and return
            // are widened at random around that instant (so operations overlap).
            let mut state: Option<Vec<u8>> = None;
            let mut h = Vec::new();
            for i in 0..30u64 {
                let at = 100 * i + 50;
                let call = at - next() % 200.min(at);
                let ret = at + next() % 200;
                let input = if next() % 2 == 0 {
                    put(&format!("v{i}"))
                } else {
                    KvInput::Get
                };
                let output = match &input {
                    KvInput::Get => KvOutput::Value(state.clone()),
                    _ => KvOutput::Ok,
                };
                if let KvInput::Put(v) = &input {
                    state = Some(v.clone());
                }
                h.push(op(next() % 5, input, call, output, ret));
            }
            assert!(check_kv(&h).is_ok());
            // A read answers a value nobody wrote.
            if let Some(read) = h.iter_mut().find(|(_, o)| o.input == KvInput::Get) {
                read.1.completion.as_mut().unwrap().0 = value(Some("never written"));
                caught += usize::from(check_kv(&h).is_err());
            }
        }
        assert!(caught > 150, "{caught}");
    }
}
