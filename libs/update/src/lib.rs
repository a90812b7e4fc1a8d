//! Automatic updates with two slots: the logic every party shares.
//!
//! A disk holds two complete releases (slots A and B) and a small raw state partition. The
//! loader, the kernel, the update agent and the host tools all read and write the same few
//! structures, so they live here once, `no_std` and without unsafe code, and are tested on the
//! host where a test can corrupt, tear and replay them at will:
//!
//! - [`state`]: the boot-state record, two checksummed copies with sequence numbers. A write
//!   always goes to the copy that does not hold the current state, so a torn or lost write
//!   leaves the previous state readable; the commit point of any change is one such write.
//! - [`manifest`]: a release's manifest (product, version, rollback index, payload sizes and
//!   SHA-256) and its ed25519 signature over a domain-separated canonical encoding. Nothing
//!   in it is trusted before the signature checks.
//! - [`choice`]: which slot to boot, as a pure function of the state and of which slots
//!   verify, and the state to write before booting it (boot counting and rollback).
//!
//! [`manifest`] needs the `manifest` feature (on by default); without it the crate has no
//! cryptography, as the kernel wants.
//!
//! Everything read from a disk or a network is untrusted input: it yields an [`Error`], never
//! a panic.
#![no_std]
#![forbid(unsafe_code)]

pub mod choice;
mod error;
#[cfg(feature = "manifest")]
pub mod manifest;
pub mod state;
mod wire;

pub use error::{Error, Result};
