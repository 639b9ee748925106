//! sync layer (being built).
