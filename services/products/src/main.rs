//! `courier-products`: loads settings, starts logging, runs the service until SIGTERM / SIGINT.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    courier_runtime::main("courier-products", |settings, stop| {
        courier_products::run(settings, |_| {}, stop)
    })
}
