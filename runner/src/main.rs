//! Evergreen's host tool.
fn main() {}
