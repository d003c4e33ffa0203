//! `courier-gateway`: HTTP in front of every service (work in progress).

pub mod auth;
pub mod config;
pub mod routes;
