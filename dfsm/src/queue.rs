//! The two message queues of a DFSM sync round (spec §3.5).
//!
//! The two message queues of the DFSM (spec §3.5): the normal-message queue
//! kept sorted by the sender's `count` (ties keep arrival order), and the
//! append-only sync queue used in UPDATE mode for already-synced senders.

use crate::types::MemberId;

/// A NORMAL message held back while not SYNCED (the whole wire message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub sender: MemberId,
    pub count: u64,
    pub bytes: Vec<u8>,
}

/// Queue 1: sorted ascending by `count`, stable for equal counts.
#[derive(Debug, Clone, Default)]
pub struct MsgQueue {
    items: Vec<Queued>,
}

impl MsgQueue {
    /// Sorted insert after any entries with an equal count.
    pub fn insert(&mut self, q: Queued) {
        let pos = self.items.partition_point(|e| e.count <= q.count);
        self.items.insert(pos, q);
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn clear(&mut self) {
        self.items.clear();
    }
    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.items.iter()
    }
    /// Remove and return all entries in order.
    pub fn take(&mut self) -> Vec<Queued> {
        std::mem::take(&mut self.items)
    }
    /// Put back entries that must stay (already in order, taken by `take`).
    pub fn restore(&mut self, kept: Vec<Queued>) {
        for q in kept {
            self.insert(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_count_ties_keep_arrival_order() {
        let mut q = MsgQueue::default();
        let m = |n, c| Queued {
            sender: MemberId::new(n, 1),
            count: c,
            bytes: vec![],
        };
        q.insert(m(1, 5));
        q.insert(m(2, 3));
        q.insert(m(3, 5));
        q.insert(m(4, 1));
        let order: Vec<u32> = q.iter().map(|e| e.sender.nodeid).collect();
        assert_eq!(order, vec![4, 2, 1, 3]);
    }
}
