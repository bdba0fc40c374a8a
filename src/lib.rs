//! mdmaudit: packet-level auditor of mobile device management network requirements.
//!
//! Layers, imported in one direction only:
//! `capture` -> `decode` -> `flow` (with `tls`, `dns`, `http` name extraction) ->
//! `audit` (with `catalog`) -> `report`.

/// Modules that read packet, file or catalog bytes: no panic path on input data.
/// Indexing, arithmetic, unwrap/expect and panicking macros are denied there (their
/// test modules allow them).
macro_rules! panic_free {
    ($($m:ident),* $(,)?) => {
        $(
            #[deny(
                clippy::unwrap_used,
                clippy::expect_used,
                clippy::indexing_slicing,
                clippy::arithmetic_side_effects,
                clippy::panic,
                clippy::unreachable,
                clippy::todo,
                clippy::unimplemented
            )]
            pub mod $m;
        )*
    };
}

panic_free!(audit, budget, decode, dns, flow, http, quic, readahead, reader, tls);

pub mod capture;
pub mod catalog;
pub mod cli;
pub mod engine;
pub mod jsonw;
pub mod live;
pub mod mapped;
pub mod model;
pub mod prefetch;
pub mod report;
pub mod site;
pub mod threads;
