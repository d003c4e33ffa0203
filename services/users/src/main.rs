//! `courier-users`: loads settings, starts logging, runs the service until SIGTERM / SIGINT.

use std::process::ExitCode;

use courier_users::Settings;

/// mimalloc: the request path allocates a few small objects per request (headers, futures,
/// actor envelopes), and glibc's allocator cost about a quarter of the bridge's CPU in the
/// request-reply benchmark (`cargo bench -p courier-actors --bench reqreply`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let settings: Settings = match courier_runtime::settings_or_exit("courier-users") {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    courier_runtime::telemetry::init(&settings.log);
    let result = actix::System::new().block_on(courier_users::run(settings, |_| {}, async {
        let signal = courier_runtime::shutdown_signal().await;
        tracing::info!(signal, "Stopping.");
    }));
    match result {
        Ok(report) if report.complete => ExitCode::SUCCESS,
        Ok(report) => {
            // Requests abandoned past the grace period, or replies that may not have reached
            // the server: a supervisor should know this stop lost something.
            tracing::error!(
                abandoned = report.abandoned,
                "Stopped without a complete drain."
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "courier-users failed.");
            eprintln!("courier-users: {e:#}");
            ExitCode::FAILURE
        }
    }
}
