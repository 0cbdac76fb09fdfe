//! places-stub's answers and server, compiled into the tests that
//! need a Places server they can steer: held until released, failing, not
//! JSON, or recording what the herd sent. The stand-in is a program of its
//! own (`src/bin/places-stub/`), not part of the library; the tests take
//! its source files as they are, so they exercise the same answers
//! the program serves. A test that needs it declares it itself
//! (`#[path = "support/stub.rs"] mod stub;`), so the others do not compile
//! it; each uses only part of it.
#![allow(dead_code, unused_imports)]

#[path = "../../src/bin/places-stub/answers.rs"]
mod answers;
#[path = "../../src/bin/places-stub/http.rs"]
mod http;
#[path = "../../src/bin/places-stub/made_up.rs"]
mod made_up;
#[path = "../../src/bin/places-stub/server.rs"]
mod server;

pub use answers::{legacy_answer, new_answer};
pub use server::{Behaviour, PlacesStub, RecordedRequest};
