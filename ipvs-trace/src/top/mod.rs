//! `ipvs-trace top`: the live per-service view of a hot node.
//!
//! [`model`] turns events into per-interval rates, shares and totals (pure, tested without a
//! kernel); [`view`] draws a frame with ratatui or writes it as plain text for `--batch`;
//! [`terminal`] owns the terminal while the view is up and gives it back on every way out
//! (quit, error, panic). The event loop is `crate::cmd::top`.

pub mod model;
pub mod terminal;
pub mod view;
