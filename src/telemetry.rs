//! Operational logging with `tracing`, on standard error.

use tracing_subscriber::EnvFilter;

use crate::cli::{LogArgs, LogFormat};

/// Errors while setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The `--log-level` filter does not parse.
    #[error("invalid --log-level {filter:?}: {source}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// The parser's error.
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Installs the global `tracing` subscriber: the filter from `--log-level`, and JSON or
/// text lines on standard error (JSON by default when running inside a cluster, detected
/// by `KUBERNETES_SERVICE_HOST`).
///
/// Returns [`TelemetryError::Filter`] when the filter does not parse.
pub fn init(args: &LogArgs) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(&args.log_level).map_err(|source| TelemetryError::Filter {
        filter: args.log_level.clone(),
        source,
    })?;
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let format = args
        .log_format
        .unwrap_or(if in_cluster { LogFormat::Json } else { LogFormat::Text });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
