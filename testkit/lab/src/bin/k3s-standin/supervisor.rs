//! The supervisor port (6443): a TCP proxy to the lab's API server.

use super::*;

pub(super) fn start_supervisor(ip: &str, kube_url: &str) -> Result<(), String> {
    let listener = TcpListener::bind((ip, 6443)).map_err(|e| format!("listen {ip}:6443: {e}"))?;
    let target = kube_url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            let target = target.clone();
            std::thread::spawn(move || {
                let Ok(upstream) = TcpStream::connect(&target) else {
                    return;
                };
                k3splan_lab::splice(client, upstream);
            });
        }
    });
    Ok(())
}
