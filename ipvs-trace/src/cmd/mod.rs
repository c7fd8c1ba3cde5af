//! One module per subcommand.

pub mod balance;
pub mod check;
pub mod rules;
pub mod top;
pub mod trace;
