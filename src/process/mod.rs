//! Processes: start methods, task identity, the `Process` API.

/// Must be the first line of `main` in any program that starts processes. In a
/// spawned worker it runs the worker and never returns; in the parent it returns
/// at once.
pub fn init() {}
