//! `courier-gateway`: loads settings, starts logging, serves HTTP until SIGTERM / SIGINT.

use std::process::ExitCode;

use courier_gateway::Settings;

/// mimalloc, as in the services: the request path allocates small objects per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let settings: Settings = match courier_runtime::settings_or_exit("courier-gateway") {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let telemetry = courier_runtime::telemetry::init(courier_gateway::SERVICE_NAME, &settings.log);
    let result = actix::System::new().block_on(courier_gateway::run(settings, |_| {}, async {
        let signal = courier_runtime::shutdown_signal().await;
        tracing::info!(signal, "Stopping.");
    }));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "courier-gateway failed.");
            eprintln!("courier-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
