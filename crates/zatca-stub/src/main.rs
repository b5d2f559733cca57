//! `daftar-zatca-stub`: serves the stub Fatoora API on loopback (see the library docs).

use std::io::Write;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "daftar-zatca-stub", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The OTP the compliance CSID request must carry.
    #[arg(long, default_value = "123456")]
    otp: String,
    /// The certificate template CSRs must name (the simulation environment's by default).
    #[arg(long, default_value = "PREZATCA-Code-Signing")]
    template: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let address = listener.local_addr()?;
    println!("daftar-zatca-stub listening on http://{address}");
    std::io::stdout().flush()?;
    let app = daftar_zatca_stub::router(daftar_zatca_stub::Config { otp: args.otp, template: args.template });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
