//! The lifecycle's tests: no broker, no sleeps. [`scenario::Scenario`] feeds messages and ticks;
//! the assertions read the returned points as values.

mod acks;
mod checkpoint;
mod completed;
mod measurements;
mod scenario;
mod ticks;
