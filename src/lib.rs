//! mdmaudit: packet-level auditor of mobile device management network requirements.
//!
//! Layers, imported in one direction only:
//! `capture` -> `decode` -> `flow` (with `tls`, `dns`, `http` name extraction) ->
//! `audit` (with `catalog`) -> `report`.

pub mod audit;
pub mod budget;
pub mod capture;
pub mod catalog;
pub mod cli;
pub mod decode;
pub mod dns;
pub mod engine;
pub mod flow;
pub mod http;
pub mod live;
pub mod model;
pub mod quic;
pub mod reader;
pub mod report;
pub mod site;
pub mod tls;
