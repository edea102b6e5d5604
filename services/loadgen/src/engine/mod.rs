//! The load itself: the users ([`runner`]) sending what the scenario says ([`scenario`]), over
//! their own HTTP/1.1 connections for `http://` targets ([`fasthttp`]) or `reqwest` for
//! `https://`, and the exact cumulative stats they record ([`stats`]). Nothing here knows where
//! results go or how they are printed.

pub(crate) mod fasthttp;
pub(crate) mod runner;
pub(crate) mod scenario;
pub(crate) mod stats;
