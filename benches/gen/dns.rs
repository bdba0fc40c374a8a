//! DNS query and response messages (RFC 1035 wire format, compressed owner names).

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;

fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn header(out: &mut Vec<u8>, id: u16, flags: u16, qd: u16, an: u16) {
    for v in [id, flags, qd, an, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(name.len() + 18);
    header(&mut m, id, 0x0100, 1, 0); // standard query, recursion desired
    push_name(&mut m, name);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// The response: the question, then the CNAME chain (each owner a pointer to the
/// previous target), then one address record per entry of `addrs` (4 or 16 bytes).
pub fn response(
    id: u16,
    name: &str,
    qtype: u16,
    cnames: &[String],
    addrs: &[Vec<u8>],
    ttl: u32,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    header(&mut m, id, 0x8180, 1, (cnames.len() + addrs.len()) as u16);
    push_name(&mut m, name);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    let mut owner: u16 = 12; // the question name
    for c in cnames {
        m.extend_from_slice(&(0xc000 | owner).to_be_bytes());
        m.extend_from_slice(&TYPE_CNAME.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        let mut rd = Vec::new();
        push_name(&mut rd, c);
        m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        owner = m.len() as u16;
        m.extend_from_slice(&rd);
    }
    for a in addrs {
        m.extend_from_slice(&(0xc000 | owner).to_be_bytes());
        let t = if a.len() == 4 { TYPE_A } else { TYPE_AAAA };
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(a.len() as u16).to_be_bytes());
        m.extend_from_slice(a);
    }
    m
}
