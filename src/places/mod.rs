//! The Places client (written by the core) and Google's JSON layout.
pub mod layout;
