//! `courier-notifications`: loads settings, starts logging, runs the service until SIGTERM /
//! SIGINT.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    courier_runtime::main("courier-notifications", |settings, stop| {
        courier_notifications::run(settings, |_| {}, stop)
    })
}
