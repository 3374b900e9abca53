//! The membership table: every member this node knows, in one vector sorted by node id.
//!
//! A sorted vector rather than a tree map because the table is read far more than it
//! grows: lookups are a binary search either way, a walk in id order (the probe ring, the
//! digest) is a walk over contiguous memory, and an entry costs its own size and nothing
//! more, where a B-tree holds each id twice (key and member) and leaves about a third of
//! its nodes empty. That difference is what lets one machine simulate 10,000 nodes that
//! each hold 10,000 members. A new member costs moving the entries after it, about a
//! megabyte at 10,000 members, which is rare next to lookups.

use xnode_types::NodeId;

use super::Member;

#[derive(Debug, Default)]
pub(super) struct MemberTable {
    /// Sorted by `id`, at most one entry per id.
    members: Vec<Member>,
}

impl MemberTable {
    fn position(&self, id: &NodeId) -> Result<usize, usize> {
        self.members.binary_search_by(|m| m.id.cmp(id))
    }

    pub(super) fn get(&self, id: &NodeId) -> Option<&Member> {
        self.position(id).ok().and_then(|i| self.members.get(i))
    }

    pub(super) fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member> {
        let i = self.position(id).ok()?;
        self.members.get_mut(i)
    }

    pub(super) fn contains_key(&self, id: &NodeId) -> bool {
        self.position(id).is_ok()
    }

    /// Adds `member`, or replaces the entry with its id.
    pub(super) fn insert(&mut self, member: Member) {
        match self.position(&member.id) {
            Ok(i) => {
                if let Some(slot) = self.members.get_mut(i) {
                    *slot = member;
                }
            }
            Err(i) => self.members.insert(i, member),
        }
    }

    /// Every member, in id order.
    pub(super) fn values(&self) -> std::slice::Iter<'_, Member> {
        self.members.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    pub(super) fn retain(&mut self, keep: impl FnMut(&Member) -> bool) {
        self.members.retain(keep);
    }

    /// Room for `additional` more members without moving the table.
    pub(super) fn reserve(&mut self, additional: usize) {
        self.members.reserve_exact(additional);
    }

    /// The members in ring order after `id`: those with larger ids, then from the
    /// smallest id round to `id` itself (last, if it is a member).
    pub(super) fn ring_after(&self, id: &NodeId) -> impl Iterator<Item = &Member> {
        let start = match self.position(id) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        let (before, after) = self.members.split_at(start.min(self.members.len()));
        after.iter().chain(before)
    }
}
