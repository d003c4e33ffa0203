//! `courier-users`: loads settings, starts logging, runs the service until SIGTERM / SIGINT.

use std::process::ExitCode;

/// mimalloc: the request path allocates a few small objects per request (headers, futures,
/// actor envelopes), and glibc's allocator cost about a quarter of the bridge's CPU in the
/// request-reply benchmark (`cargo bench -p courier-actors --bench reqreply`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    courier_runtime::main("courier-users", |settings, stop| {
        courier_users::run(settings, |_| {}, stop)
    })
}
