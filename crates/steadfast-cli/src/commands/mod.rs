//! The commands. Each writes its result to `out`; errors go back to `main`.

mod control;
mod list;
mod show;

pub use control::{cancel, parse_payload, signal};
pub use list::list;
pub use show::show;
