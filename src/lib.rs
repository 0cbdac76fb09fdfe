//! proxy-herd: an application server herd, one thread per connection.
//!
//! Placeholder: the layout doc is written with the modules.
#![forbid(unsafe_code)]

pub mod flood;
pub mod herd;
pub mod logging;
pub mod places;
pub mod protocol;
pub mod server;
pub mod store;
pub mod stub;
