//! `courier-payments`: loads settings, starts logging, runs the service until SIGTERM / SIGINT.

use std::process::ExitCode;

fn main() -> ExitCode {
    courier_runtime::main("courier-payments", |settings, stop| {
        courier_payments::run(settings, |_| {}, stop)
    })
}
