//! pool layer (being built).
