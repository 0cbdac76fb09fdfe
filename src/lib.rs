//! proxy-herd: an application server herd, one thread per connection.
//!
//! Placeholder: the layout doc is written with the modules.
#![forbid(unsafe_code)]

pub mod places;
pub mod stub;
