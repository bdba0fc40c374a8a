//! mdmaudit: packet-level auditor of mobile device management network requirements.
//!
//! Layers, imported in one direction only:
//! `capture` -> `decode` -> `flow` (with `tls`, `dns`, `http` name extraction) ->
//! `audit` (with `catalog`) -> `report`.

pub mod model;
pub mod catalog;
pub mod decode;
pub mod capture;
pub mod tls;
pub mod dns;
pub mod http;
pub mod flow;
pub mod engine;
pub mod audit;
pub mod report;
pub mod cli;
