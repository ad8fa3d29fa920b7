//! Per-module state access, so a new patch can take over the state of the modules it
//! shares with the running one (same id, same type) when it replaces it: a note that is
//! sounding keeps sounding across a live patch edit.

use super::Patch;
use crate::state::{StateError, StateReader, StateWriter};

impl Patch {
    /// Bytes of state of module `node`, or `None` for an unknown node.
    pub fn module_state_len(&self, node: u16) -> Option<usize> {
        let exec = *self.exec_of.get(usize::from(node))?;
        Some(self.nodes.get(exec)?.state_len)
    }

    /// Writes the state of module `node` (exactly [`module_state_len`](Self::module_state_len)
    /// bytes). Returns `false` for an unknown node. Allocates nothing.
    pub fn save_module_state(&self, node: u16, w: &mut StateWriter<'_>) -> bool {
        let Some(n) = self
            .exec_of
            .get(usize::from(node))
            .and_then(|&e| self.nodes.get(e))
        else {
            return false;
        };
        n.unit.save_state(w);
        true
    }

    /// Restores the state of module `node` from bytes written by
    /// [`save_module_state`](Self::save_module_state) of a module of the same type.
    /// Allocates nothing.
    ///
    /// # Errors
    /// [`StateError`] for bytes that do not fit the module (it is then reset).
    pub fn load_module_state(
        &mut self,
        node: u16,
        r: &mut StateReader<'_>,
    ) -> Result<(), StateError> {
        let Some(n) = self
            .exec_of
            .get(usize::from(node))
            .and_then(|&e| self.nodes.get_mut(e))
        else {
            return Err(StateError::InvalidValue {
                what: "module node",
                offset: 0,
            });
        };
        let result = n.unit.load_state(r);
        if result.is_err() {
            n.unit.reset();
        }
        result
    }
}
