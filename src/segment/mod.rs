//! segment layer (being built).
