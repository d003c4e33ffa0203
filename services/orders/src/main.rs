//! `courier-orders`: loads settings, starts logging, runs the service until SIGTERM / SIGINT.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    courier_runtime::main("courier-orders", |settings, stop| {
        courier_orders::run(settings, |_| {}, stop)
    })
}
