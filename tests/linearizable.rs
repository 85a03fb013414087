//! A linearizability checker for a register: Wing & Gong's search, with Lowe's memo of the
//! (operations linearized, register value) pairs already explored so each is tried once.
//!
//! A tag is a register (a PUT writes it, a GET reads it, and "absent" is its first value), and
//! linearizability is local (Herlihy & Wing): a history over many tags is linearizable exactly
//! when each tag's sub-history is. So the region test checks one tag at a time.
//!
//! An operation whose outcome the client never learned (a timeout, a 503 after the write may
//! already have been proposed) may have taken effect at any moment after its call, or never:
//! it returns "at infinity". A write of that kind whose value nobody read is dropped before
//! the search, since putting it after everything else is always possible; keeping it would
//! double the search for each one.

use std::collections::HashSet;
use std::hash::Hash;

/// What an operation did to the register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind<V> {
    Write(V),
    /// A read and what it returned (`None`: the register was still unset).
    Read(Option<V>),
}

/// One operation of a history: its call and return times (any monotonic clock), `ret` `None`
/// when the outcome is unknown.
#[derive(Clone, Debug)]
pub struct Op<V> {
    pub call: u64,
    pub ret: Option<u64>,
    pub kind: Kind<V>,
}

/// The history is linearizable: the operations' indices in one order that explains it
/// (unknown-outcome writes nobody read are left out).
pub type Order = Vec<usize>;

/// Checks `history` against a register that starts unset. On failure, says how far the
/// deepest attempt got and which operation it could not place.
pub fn check<V: Clone + Eq + Hash>(history: &[Op<V>]) -> Result<Order, String> {
    let read: HashSet<&V> = history
        .iter()
        .filter_map(|op| match &op.kind {
            Kind::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let kept: Vec<usize> = (0..history.len())
        .filter(|&i| match (&history[i].kind, history[i].ret) {
            (Kind::Write(v), None) => read.contains(v),
            _ => true,
        })
        .collect();
    Search::new(history, &kept).run()
}

/// A call or return event in the doubly linked list the search lifts operations out of.
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    partner: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Search<'h, V> {
    history: &'h [Op<V>],
    events: Vec<Event>,
    head: Option<usize>,
}

impl<'h, V: Clone + Eq + Hash> Search<'h, V> {
    fn new(history: &'h [Op<V>], kept: &[usize]) -> Self {
        // (time, returns after calls at the same instant, op): an operation that returned
        // at the instant another was called counts as concurrent with it, the lenient reading.
        let mut order: Vec<(u64, bool, usize)> = Vec::new();
        for &i in kept {
            order.push((history[i].call, false, i));
            order.push((history[i].ret.unwrap_or(u64::MAX), true, i));
        }
        order.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
        let mut events: Vec<Event> = order
            .iter()
            .enumerate()
            .map(|(at, &(_, is_ret, op))| Event {
                op,
                is_call: !is_ret,
                partner: usize::MAX,
                prev: at.checked_sub(1),
                next: (at + 1 < order.len()).then_some(at + 1),
            })
            .collect();
        let mut call_of = std::collections::HashMap::new();
        for (at, e) in events.iter().enumerate() {
            if e.is_call {
                call_of.insert(e.op, at);
            }
        }
        for at in 0..events.len() {
            if !events[at].is_call {
                let call = call_of[&events[at].op];
                events[call].partner = at;
            }
        }
        let head = (!events.is_empty()).then_some(0);
        Search {
            history,
            events,
            head,
        }
    }

    /// Takes call event `c` and its return out of the list.
    fn lift(&mut self, c: usize) {
        for at in [c, self.events[c].partner] {
            let (prev, next) = (self.events[at].prev, self.events[at].next);
            match prev {
                Some(p) => self.events[p].next = next,
                None => self.head = next,
            }
            if let Some(n) = next {
                self.events[n].prev = prev;
            }
        }
    }

    /// Puts call event `c` and its return back, in reverse order of `lift`.
    fn unlift(&mut self, c: usize) {
        for at in [self.events[c].partner, c] {
            let (prev, next) = (self.events[at].prev, self.events[at].next);
            match prev {
                Some(p) => self.events[p].next = Some(at),
                None => self.head = Some(at),
            }
            if let Some(n) = next {
                self.events[n].prev = Some(at);
            }
        }
    }

    fn run(mut self) -> Result<Order, String> {
        let words = self.history.len().div_ceil(64).max(1);
        let mut linearized = vec![0u64; words];
        let mut seen: HashSet<(Vec<u64>, Option<V>)> = HashSet::new();
        let mut state: Option<V> = None;
        // (call event, register value before it)
        let mut stack: Vec<(usize, Option<V>)> = Vec::new();
        let mut deepest = (0, None);
        let mut cursor = self.head;
        while let Some(at) = cursor {
            let event = &self.events[at];
            if event.is_call {
                let op = event.op;
                let after = match &self.history[op].kind {
                    Kind::Write(v) => Some(Some(v.clone())),
                    Kind::Read(v) if *v == state => Some(state.clone()),
                    Kind::Read(_) => None,
                };
                if let Some(after) = after {
                    linearized[op / 64] |= 1 << (op % 64);
                    if seen.insert((linearized.clone(), after.clone())) {
                        stack.push((at, std::mem::replace(&mut state, after)));
                        self.lift(at);
                        cursor = self.head;
                        continue;
                    }
                    linearized[op / 64] &= !(1 << (op % 64));
                }
                cursor = self.events[at].next;
            } else {
                // An operation returned before any order could place it: undo the last choice.
                if stack.len() >= deepest.0 {
                    deepest = (stack.len(), Some(event.op));
                }
                let Some((call, before)) = stack.pop() else {
                    return Err(self.explain(deepest));
                };
                let op = self.events[call].op;
                linearized[op / 64] &= !(1 << (op % 64));
                state = before;
                self.unlift(call);
                cursor = self.events[call].next;
            }
        }
        Ok(stack
            .iter()
            .map(|&(call, _)| self.events[call].op)
            .collect())
    }

    fn explain(&self, (depth, stuck): (usize, Option<usize>)) -> String {
        let stuck = stuck.map(|op| {
            let o = &self.history[op];
            format!(
                "operation {op} ({:?}, called at {}, returned at {:?})",
                label(&o.kind),
                o.call,
                o.ret
            )
        });
        format!(
            "not linearizable: the deepest order placed {depth} operations, then {} could not be placed",
            stuck.unwrap_or_else(|| "nothing".into())
        )
    }
}

fn label<V>(kind: &Kind<V>) -> &'static str {
    match kind {
        Kind::Write(_) => "write",
        Kind::Read(None) => "read of nothing",
        Kind::Read(Some(_)) => "read",
    }
}

/// A read served from one node's own replica, without a read-index: it may be stale, but
/// never older than what the same node already acknowledged or showed.
pub struct LocalRead<V> {
    pub node: u64,
    pub call: u64,
    pub ret: u64,
    pub value: Option<V>,
}

/// A write with the node it went through.
pub struct Write<'h, V> {
    pub node: u64,
    pub op: &'h Op<V>,
}

/// Checks the guarantees a node's plain reads give, using real-time order only (so it never
/// blames an order the checker merely chose): a read returns no value before its write was
/// called (no reads from the future); nothing older than a write the same node acknowledged
/// before the read was called (read your writes); nothing older than what an earlier read on
/// the same node returned (monotonic reads). "Older" means: its write returned before the
/// other was called, or the read saw nothing where the other saw a value.
pub fn check_local_reads<V: Eq + Hash + std::fmt::Debug>(
    writes: &[Write<'_, V>],
    reads: &[LocalRead<V>],
) -> Result<(), String> {
    let by_value: std::collections::HashMap<&V, &Op<V>> = writes
        .iter()
        .filter_map(|w| match &w.op.kind {
            Kind::Write(v) => Some((v, w.op)),
            Kind::Read(_) => None,
        })
        .collect();
    // Whether value `a` (its write, or nothing) is strictly older than write `b`.
    let older = |a: Option<&Op<V>>, b: &Op<V>| match a {
        None => true,
        Some(a) => a.ret.is_some_and(|ret| ret < b.call),
    };
    for r in reads {
        let seen = match &r.value {
            None => None,
            Some(v) => {
                let w = by_value
                    .get(v)
                    .ok_or_else(|| format!("node {} read {v:?}, which nobody wrote", r.node))?;
                if w.call > r.ret {
                    return Err(format!("node {} read {v:?} before it was written", r.node));
                }
                Some(*w)
            }
        };
        let own = writes
            .iter()
            .filter(|w| w.node == r.node && w.op.ret.is_some_and(|ret| ret < r.call));
        if let Some(w) = own.into_iter().find(|w| older(seen, w.op)) {
            return Err(format!(
                "node {} read {:?} at {} after it acknowledged the newer write {:?} at {:?}",
                r.node, r.value, r.call, w.op.kind, w.op.ret
            ));
        }
        let earlier = reads.iter().filter(|e| e.node == r.node && e.ret < r.call);
        for e in earlier {
            let Some(v) = &e.value else { continue };
            let shown = by_value[v];
            if older(seen, shown) {
                return Err(format!(
                    "node {} read {:?} at {} after it had shown the newer {v:?} at {}",
                    r.node, r.value, r.call, e.ret
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(call: u64, ret: u64, v: u32) -> Op<u32> {
        Op {
            call,
            ret: Some(ret),
            kind: Kind::Write(v),
        }
    }
    fn r(call: u64, ret: u64, v: Option<u32>) -> Op<u32> {
        Op {
            call,
            ret: Some(ret),
            kind: Kind::Read(v),
        }
    }
    fn lost(call: u64, v: u32) -> Op<u32> {
        Op {
            call,
            ret: None,
            kind: Kind::Write(v),
        }
    }

    fn check_case(history: &[Op<u32>], linearizable: bool) {
        let got = check(history);
        assert_eq!(got.is_ok(), linearizable, "{history:?}: {got:?}");
        if let Ok(order) = got {
            replay(history, &order);
        }
    }

    /// The order the checker gives must itself be a legal sequential run that respects
    /// real time: a checker that answers "yes" with a wrong witness is caught here.
    fn replay(history: &[Op<u32>], order: &[usize]) {
        let mut state = None;
        for (k, &i) in order.iter().enumerate() {
            match &history[i].kind {
                Kind::Write(v) => state = Some(*v),
                Kind::Read(v) => assert_eq!(*v, state, "read {i} in order {order:?}"),
            }
            for &j in &order[..k] {
                let later_started = history[i].ret.is_some_and(|ret| ret < history[j].call);
                assert!(!later_started, "{i} returned before {j} was called");
            }
        }
    }

    #[test]
    fn sequential_histories() {
        check_case(&[], true);
        check_case(&[r(0, 1, None)], true);
        check_case(&[r(0, 1, Some(1))], false);
        check_case(&[w(0, 1, 1), r(2, 3, Some(1))], true);
        check_case(&[w(0, 1, 1), r(2, 3, None)], false);
        check_case(&[w(0, 1, 1), w(2, 3, 2), r(4, 5, Some(1))], false);
        check_case(&[w(0, 1, 1), w(2, 3, 2), r(4, 5, Some(2))], true);
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // Two overlapping writes, then reads that see them in one order.
        check_case(&[w(0, 10, 1), w(5, 15, 2), r(20, 21, Some(1))], true);
        check_case(&[w(0, 10, 1), w(5, 15, 2), r(20, 21, Some(2))], true);
        // A read overlapping a write may see the old or the new value...
        check_case(&[w(0, 10, 1), r(2, 3, Some(1))], true);
        check_case(&[w(0, 10, 1), r(2, 3, None)], true);
        // ...but once one read saw the new value, a later read may not see the old one.
        check_case(&[w(0, 10, 1), r(2, 3, Some(1)), r(4, 5, None)], false);
        // Equal instants count as overlapping.
        check_case(&[w(0, 5, 1), r(5, 6, None)], true);
    }

    #[test]
    fn reads_that_disagree_on_the_order_of_two_writes_are_caught() {
        // Two writes still running while readers see 1, then 2: the writes took effect in
        // that order. A third read seeing 1 again would need write 1 to happen twice.
        let h = [
            w(0, 20, 1),
            w(0, 20, 2),
            r(11, 12, Some(1)),
            r(13, 14, Some(2)),
            r(15, 16, Some(1)),
        ];
        check_case(&h[..4], true);
        check_case(&h, false);
        // Once both writes are done, the value is settled: reading 1 then 2 is impossible.
        check_case(
            &[
                w(0, 10, 1),
                w(0, 10, 2),
                r(11, 12, Some(1)),
                r(13, 14, Some(2)),
            ],
            false,
        );
    }

    #[test]
    fn a_write_with_an_unknown_outcome_may_have_happened_or_not() {
        check_case(&[lost(0, 1), r(5, 6, Some(1))], true);
        check_case(&[lost(0, 1), r(5, 6, None)], true);
        // It cannot have happened before it was called.
        check_case(&[r(0, 1, Some(1)), lost(5, 1)], false);
        // It happened once: after another write overwrote it, it cannot come back.
        check_case(
            &[lost(0, 1), r(1, 2, Some(1)), w(3, 4, 2), r(5, 6, Some(1))],
            false,
        );
        // Unread lost writes are dropped, and many of them cost nothing.
        let mut h: Vec<Op<u32>> = (0..200).map(|i| lost(i, 1000 + i as u32)).collect();
        h.push(w(300, 301, 7));
        h.push(r(302, 303, Some(7)));
        check_case(&h, true);
    }

    #[test]
    fn a_long_history_with_many_concurrent_clients_is_checked_quickly() {
        // 6 clients, 3 000 operations, each client's operations back to back and overlapping
        // the others'; every read returns the value of the latest write that started before
        // it in the interleaving, so the history is linearizable by construction.
        let mut h = Vec::new();
        let mut last = None;
        for i in 0..3000u64 {
            let (call, ret) = (i * 10, i * 10 + 55);
            if i % 3 == 0 {
                h.push(w(call, ret, i as u32));
                last = Some(i as u32);
            } else {
                h.push(Op {
                    call: call + 1,
                    ret: Some(ret),
                    kind: Kind::Read(last),
                });
            }
        }
        check_case(&h, true);
        // Make one read return a value overwritten long before it started.
        let stale = h
            .iter()
            .position(|o| o.call > 20_000 && matches!(o.kind, Kind::Read(_)));
        h[stale.unwrap()].kind = Kind::Read(Some(0));
        check_case(&h, false);
    }

    fn local(node: u64, call: u64, ret: u64, value: Option<u32>) -> LocalRead<u32> {
        LocalRead {
            node,
            call,
            ret,
            value,
        }
    }

    #[test]
    fn local_reads_may_be_stale_but_never_older_than_the_node_showed() {
        let (w1, w2) = (w(0, 1, 1), w(2, 3, 2));
        let writes = [Write { node: 1, op: &w1 }, Write { node: 2, op: &w2 }];
        let ok = |reads: &[LocalRead<u32>]| check_local_reads(&writes, reads);
        // Node 1 lags behind node 2's write: stale, allowed.
        assert!(ok(&[local(1, 4, 5, Some(1))]).is_ok());
        // Node 1 acknowledged write 1, then shows nothing: not read-your-writes.
        assert!(ok(&[local(1, 4, 5, None)]).is_err());
        // Node 2 acknowledged write 2, then shows the older 1.
        assert!(ok(&[local(2, 4, 5, Some(1))]).is_err());
        // Node 1 showed 2, then the older 1: not monotonic.
        assert!(ok(&[local(1, 4, 5, Some(2)), local(1, 6, 7, Some(1))]).is_err());
        // The same on two nodes is fine: each node is monotonic on its own.
        assert!(ok(&[local(2, 4, 5, Some(2)), local(1, 6, 7, Some(1))]).is_ok());
        // A value from the future, or one nobody wrote.
        assert!(ok(&[local(1, 0, 0, Some(2))]).is_err());
        assert!(ok(&[local(1, 4, 5, Some(9))]).is_err());
    }
}
