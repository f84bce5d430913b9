//! The recurrent side of a sequence's memory: hybrid models (Qwen3.5) keep, in each Gated
//! DeltaNet layer, a fixed-size state instead of K and V rows: the convolution's window (the
//! last `d_conv - 1` inputs of every channel) and the delta rule's matrix per value head, f32.
//!
//! A state cannot be rolled back token by token as cells can. What this module keeps so that
//! rollbacks still work:
//! - **snapshots**: each layer's state tensors have `slots` rows; a micro-batch of n tokens
//!   writes the states after its last `min(n, slots)` tokens (slot s: s tokens before the
//!   last, as ggml's gated delta-net op writes them), so a rollback within the last
//!   micro-batch (a rejected speculative draft) copies a slot back;
//! - **checkpoints**: host copies of the state at chosen positions (the end of each prompt,
//!   with the state one token before), so that re-using a prompt prefix (a chat's next turn,
//!   `--prompt-cache`) restarts from the latest checkpoint at or before the shared prefix,
//!   as llama.cpp's context checkpoints do. At most [`MAX_CHECKPOINTS`] are kept, the oldest
//!   dropped first.
//!
//! Invariant: slot 0 holds the state after position `pos` (tokens `0..pos` folded in), and
//! slot s the state after `pos - s` for s < `valid`. The cells (`Cells::used`) may move
//! first (a truncate, a clear): [`Recurrent::restorable`] says which position can be
//! restored, and the state is brought there before the next evaluation
//! ([`KvCache::sync_recurrent`](super::KvCache::sync_recurrent)).

use crate::ggml::{Context, GgmlError, TensorHandle};

/// Checkpoints kept per sequence.
pub const MAX_CHECKPOINTS: usize = 4;

/// The recurrent layers of a model and the floats of each layer's two states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecurrentShape {
    /// `layers[il]`: layer il is recurrent (keeps no K and V).
    pub layers: Vec<bool>,
    pub conv_floats: u64,
    pub state_floats: u64,
}

impl RecurrentShape {
    pub fn is_recurrent(&self, il: u32) -> bool {
        self.layers.get(il as usize).copied().unwrap_or(false)
    }

    pub fn n_recurrent(&self) -> usize {
        self.layers.iter().filter(|&&r| r).count()
    }

    /// Bytes of one copy of every layer's states.
    pub fn bytes_per_copy(&self) -> u64 {
        self.n_recurrent() as u64 * (self.conv_floats + self.state_floats) * 4
    }

    /// Floats of one slot of each state tensor, in the order states are copied and stored:
    /// per recurrent layer its convolution state, then its delta-rule state.
    pub fn tensor_floats(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.n_recurrent()).flat_map(|_| [self.conv_floats, self.state_floats])
    }
}

/// Saved states at position `pos` (and the positions before it, `states.count` in all).
#[derive(Clone, Debug)]
struct Checkpoint {
    pos: u32,
    states: States,
}

impl Checkpoint {
    /// The slot holding the state at position `n`, if this checkpoint holds it.
    fn slot_of(&self, n: u32) -> Option<u32> {
        (n <= self.pos && self.pos - n < self.states.count).then(|| self.pos - n)
    }

    /// The latest position at or before `n` this checkpoint holds.
    fn latest_upto(&self, n: u32) -> Option<u32> {
        let p = n.min(self.pos);
        self.slot_of(p).map(|_| p)
    }
}

/// Copies of every recurrent layer's states at one position: per layer its convolution rows
/// then its delta-rule rows, `count` slots each (the state at the position, then the one
/// before when count is 2).
#[derive(Clone, Debug, Default)]
pub struct States {
    pub count: u32,
    pub bytes: Vec<Vec<u8>>,
}

/// The recurrent states of one sequence (tensors in the sequence's cache context).
pub struct Recurrent {
    pub shape: RecurrentShape,
    /// per layer: `[conv_floats, slots]` and `[state_floats, slots]` (None: attention layer)
    conv: Vec<Option<TensorHandle>>,
    state: Vec<Option<TensorHandle>>,
    slots: u32,
    pos: u32,
    valid: u32,
    checkpoints: Vec<Checkpoint>,
}

impl Recurrent {
    /// Create the state tensors (not allocated) in `ctx`, `slots` rows each.
    pub fn new(ctx: &Context, shape: &RecurrentShape, slots: u32) -> Recurrent {
        let slots = slots.max(1);
        let mut conv = Vec::new();
        let mut state = Vec::new();
        for (il, &r) in shape.layers.iter().enumerate() {
            if !r {
                conv.push(None);
                state.push(None);
                continue;
            }
            let mk = |floats: u64, name: String| {
                let t = ctx
                    .new_tensor(crate::ggml::Type::F32, &[floats as i64, slots as i64])
                    .set_name(&name);
                ctx.handle(t)
            };
            conv.push(Some(mk(shape.conv_floats, format!("cache_r_l{il}"))));
            state.push(Some(mk(shape.state_floats, format!("cache_s_l{il}"))));
        }
        Recurrent {
            shape: shape.clone(),
            conv,
            state,
            slots,
            pos: 0,
            valid: 1,
            checkpoints: Vec::new(),
        }
    }

    /// Layer `il`'s convolution-state tensor `[conv_floats, slots]`.
    pub fn conv(&self, il: usize) -> TensorHandle {
        self.conv[il].expect("a recurrent layer")
    }

    /// Layer `il`'s delta-rule state tensor `[state_floats, slots]`.
    pub fn state(&self, il: usize) -> TensorHandle {
        self.state[il].expect("a recurrent layer")
    }

    /// Snapshot slots per layer.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Position of the state in slot 0.
    pub fn pos(&self) -> u32 {
        self.pos
    }

    /// Each state tensor and the floats of one of its slots, in [`RecurrentShape::tensor_floats`]
    /// order.
    fn handles(&self) -> impl Iterator<Item = (TensorHandle, u64)> + '_ {
        let tensors = self.conv.iter().zip(&self.state).flat_map(|(a, b)| [a, b]);
        tensors.flatten().copied().zip(self.shape.tensor_floats())
    }

    /// The snapshot slot holding the state at position `n`, if one does.
    fn snapshot_of(&self, n: u32) -> Option<usize> {
        (n <= self.pos && self.pos - n < self.valid).then(|| (self.pos - n) as usize)
    }

    /// The latest position at or before `n` whose state can be restored: `n` itself when slot
    /// 0 or a snapshot holds it, else the latest checkpoint before, else 0 (the empty state).
    pub fn restorable(&self, n: u32) -> u32 {
        if self.snapshot_of(n).is_some() {
            return n;
        }
        self.checkpoints
            .iter()
            .filter_map(|c| c.latest_upto(n))
            .max()
            .unwrap_or(0)
    }

    /// Forget the states after position `n` (their tokens may be replaced): a checkpoint
    /// past `n` that also holds the state at `n` keeps only that one.
    pub fn forget_after(&mut self, n: u32) {
        let shape = &self.shape;
        self.checkpoints.retain_mut(|c| {
            if c.pos <= n {
                return true;
            }
            let Some(s) = c.slot_of(n) else {
                return false;
            };
            for (b, floats) in c.states.bytes.iter_mut().zip(shape.tensor_floats()) {
                b.drain(..s as usize * floats as usize * 4);
            }
            c.pos = n;
            c.states.count -= s;
            true
        });
    }

    /// Bring slot 0 to the state at position `n` ([`restorable`](Self::restorable) must
    /// have said `n`): a snapshot copied down, a checkpoint written back, or zeros for 0.
    pub fn restore(&mut self, ctx: &Context, n: u32) -> Result<(), GgmlError> {
        if n == self.pos && self.valid >= 1 {
            return Ok(());
        }
        if let Some(s) = self.snapshot_of(n) {
            let mut buf = Vec::new();
            for (h, floats) in self.handles() {
                let row = floats as usize * 4;
                buf.resize(row, 0);
                let t = ctx.get(h);
                t.read_bytes(s * row, &mut buf)?;
                t.write_bytes(0, &buf)?;
            }
            self.pos = n;
            self.valid = 1;
            return Ok(());
        }
        let cp = (self.checkpoints.iter()).find_map(|c| c.slot_of(n).map(|s| (c, s)));
        if let Some((c, s)) = cp {
            for ((h, floats), bytes) in self.handles().zip(&c.states.bytes) {
                let row = floats as usize * 4;
                let at = s as usize * row;
                ctx.get(h).write_bytes(0, &bytes[at..at + row])?;
            }
            self.pos = n;
            self.valid = 1;
            return Ok(());
        }
        debug_assert_eq!(n, 0, "position {n} is not restorable");
        let mut zeros = Vec::new();
        for (h, floats) in self.handles() {
            zeros.resize(floats as usize * 4, 0);
            ctx.get(h).write_bytes(0, &zeros)?;
        }
        self.pos = 0;
        self.valid = 1;
        Ok(())
    }

    /// A micro-batch of `n` tokens was evaluated: slot 0 holds the state after `pos`, and the
    /// snapshots the ones before.
    pub fn advanced(&mut self, pos: u32, n: u32) {
        self.pos = pos;
        self.valid = n.clamp(1, self.slots);
    }

    /// The states at `n` (and at `n - 1` when also held), per layer conv rows then delta-rule
    /// rows, `count` slots each: for a checkpoint, a state file, a copy to another sequence.
    pub fn states_at(&self, ctx: &Context, n: u32) -> Result<Option<States>, GgmlError> {
        if let Some(s) = self.snapshot_of(n) {
            let count = (self.valid - s as u32).min(2);
            let mut out = Vec::new();
            for (h, floats) in self.handles() {
                let row = floats as usize * 4;
                let mut b = vec![0u8; row * count as usize];
                ctx.get(h).read_bytes(s * row, &mut b)?;
                out.push(b);
            }
            return Ok(Some(States { count, bytes: out }));
        }
        Ok(self
            .checkpoints
            .iter()
            .find(|c| c.pos == n)
            .map(|c| c.states.clone()))
    }

    /// Write states read by [`states_at`](Self::states_at) (`count` slots) as the states at
    /// position `n`.
    pub fn put_states(
        &mut self,
        ctx: &Context,
        n: u32,
        count: u32,
        bytes: &[Vec<u8>],
    ) -> Result<(), GgmlError> {
        let count = count.clamp(1, self.slots);
        for ((h, floats), b) in self.handles().zip(bytes) {
            let len = (floats as usize * 4 * count as usize).min(b.len());
            ctx.get(h).write_bytes(0, &b[..len])?;
        }
        self.pos = n;
        self.valid = count;
        Ok(())
    }

    /// Keep a checkpoint of the current states (at `pos`, and `pos - 1` when a snapshot holds
    /// it), replacing one at the same position; the oldest goes beyond [`MAX_CHECKPOINTS`].
    pub fn checkpoint(&mut self, ctx: &Context) -> Result<(), GgmlError> {
        let Some(states) = self.states_at(ctx, self.pos)? else {
            return Ok(());
        };
        let pos = self.pos;
        self.checkpoints.retain(|c| c.pos != pos);
        if self.checkpoints.len() >= MAX_CHECKPOINTS {
            self.checkpoints.remove(0);
        }
        self.checkpoints.push(Checkpoint { pos, states });
        Ok(())
    }
}
