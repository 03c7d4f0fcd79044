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
                let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
                    return;
                };
                let (mut c1, mut u1) = (client, upstream);
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut u1, &mut c1);
                let _ = c1.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
    Ok(())
}
