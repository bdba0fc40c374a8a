//! pcaploop: the floor of the whole-run benchmark. A bare libpcap read loop
//! (`pcap_next_ex` through the `pcap` crate) that only counts packets and bytes.
//!
//!   cargo run --release --example pcaploop -- FILE [FILE...]

use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: pcaploop FILE [FILE...]");
        return ExitCode::from(2);
    }
    let (mut packets, mut caplen, mut wirelen) = (0u64, 0u64, 0u64);
    for f in &files {
        let mut cap = match pcap::Capture::from_file(f) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("pcaploop: {f}: {e}");
                return ExitCode::from(2);
            }
        };
        loop {
            match cap.next_packet() {
                Ok(p) => {
                    packets += 1;
                    caplen += p.data.len() as u64;
                    wirelen += u64::from(p.header.len);
                }
                Err(pcap::Error::NoMorePackets) => break,
                Err(e) => {
                    eprintln!("pcaploop: {f}: {e}");
                    return ExitCode::from(3);
                }
            }
        }
    }
    println!("{packets} packets, {caplen} bytes captured, {wirelen} bytes on the wire");
    ExitCode::SUCCESS
}
