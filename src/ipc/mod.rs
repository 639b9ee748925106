//! ipc layer (being built).
