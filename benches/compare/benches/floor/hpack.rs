//! An HPACK decoder (RFC 7541), for the floor to read response headers and trailers the way
//! a client of its own would have to: the static and dynamic tables, integers with a
//! prefix, and string literals, plain or Huffman-coded.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// RFC 7541 Appendix A.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The bit length of each byte's Huffman code (RFC 7541 Appendix B). The code is canonical:
/// codes of one length are consecutive, in byte order, after all shorter ones, so the
/// lengths alone determine it. EOS (256) is the 30-bit code of all ones.
const CODE_LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];

/// The header table size this side allows: the HTTP/2 default, never changed.
const MAX_TABLE: usize = 4096;

/// Why a header block could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum HpackError {
    /// The block ended inside a field.
    Truncated,
    /// An index outside both tables.
    BadIndex(usize),
    /// An integer too large to be meant.
    Overflow,
    /// A Huffman string with EOS in it or padding that is not a prefix of EOS.
    BadHuffman,
    /// A table size above what this side allows.
    BadTableSize(usize),
}

/// One connection's decoding state: the dynamic table the server's encoder fills.
pub struct Decoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max: MAX_TABLE,
        }
    }

    /// Decodes one whole header block, handing each field to `field` in order.
    pub fn decode(
        &mut self,
        mut block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                let (name, value) = self.entry(index)?;
                field(&name, &value);
            } else if first & 0xc0 == 0x40 {
                let (name, value) = self.literal(&mut block, 6)?;
                field(&name, &value);
                self.insert(name, value);
            } else if first & 0xe0 == 0x20 {
                let max = integer(&mut block, 5)?;
                if max > MAX_TABLE {
                    return Err(HpackError::BadTableSize(max));
                }
                self.max = max;
                self.evict();
            } else {
                // Without indexing (0000) or never indexed (0001): 4-bit prefix either way.
                let (name, value) = self.literal(&mut block, 4)?;
                field(&name, &value);
            }
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<(Vec<u8>, Vec<u8>), HpackError> {
        if let Some((name, value)) = index.checked_sub(1).and_then(|i| STATIC.get(i)) {
            return Ok((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        index
            .checked_sub(STATIC.len() + 1)
            .and_then(|i| self.table.get(i))
            .cloned()
            .ok_or(HpackError::BadIndex(index))
    }

    fn literal(&self, block: &mut &[u8], prefix: u32) -> Result<(Vec<u8>, Vec<u8>), HpackError> {
        let index = integer(block, prefix)?;
        let name = if index == 0 {
            string(block)?
        } else {
            self.entry(index)?.0
        };
        Ok((name, string(block)?))
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        self.size += name.len() + value.len() + 32;
        self.table.push_front((name, value));
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max {
            match self.table.pop_back() {
                Some((name, value)) => self.size -= name.len() + value.len() + 32,
                None => self.size = 0,
            }
        }
    }
}

/// An integer with an N-bit prefix (RFC 7541 5.1); consumes it.
fn integer(block: &mut &[u8], prefix: u32) -> Result<usize, HpackError> {
    let mask = (1usize << prefix) - 1;
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let mut value = usize::from(first) & mask;
    if value == mask {
        let mut shift = 0;
        loop {
            let (&byte, more) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = more;
            if shift > 28 {
                return Err(HpackError::Overflow);
            }
            value += usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(value)
}

/// A string literal (RFC 7541 5.2); consumes it.
fn string(block: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, 7)?;
    if block.len() < len {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = block.split_at(len);
    *block = rest;
    if huffman {
        unhuffman(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// The decoding tree: node 0 is the root; each node holds, per bit, a child node index, or
/// a symbol (`LEAF` set), or `NONE`.
struct Tree(Vec<[u32; 2]>);

const LEAF: u32 = 1 << 31;
const NONE: u32 = u32::MAX;
const EOS: u32 = 256;

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut symbols: Vec<(u8, u32)> = CODE_LENGTHS
            .iter()
            .enumerate()
            .map(|(s, &len)| (len, s as u32))
            .chain([(30, EOS)])
            .collect();
        symbols.sort();
        let mut nodes = vec![[NONE; 2]];
        let (mut code, mut last_len) = (0u32, symbols[0].0);
        for (i, &(len, symbol)) in symbols.iter().enumerate() {
            if i > 0 {
                code = (code + 1) << (len - last_len);
            }
            last_len = len;
            let mut node = 0usize;
            for bit in (0..len).rev() {
                let b = ((code >> bit) & 1) as usize;
                if bit == 0 {
                    nodes[node][b] = LEAF | symbol;
                } else {
                    if nodes[node][b] == NONE {
                        nodes.push([NONE; 2]);
                        nodes[node][b] = (nodes.len() - 1) as u32;
                    }
                    node = nodes[node][b] as usize;
                }
            }
        }
        Tree(nodes)
    })
}

fn unhuffman(raw: &[u8]) -> Result<Vec<u8>, HpackError> {
    let nodes = &tree().0;
    let mut out = Vec::with_capacity(raw.len() * 8 / 5);
    let (mut node, mut depth, mut all_ones) = (0usize, 0u32, true);
    for &byte in raw {
        for bit in (0..8).rev() {
            let b = usize::from((byte >> bit) & 1);
            let next = nodes[node][b];
            depth += 1;
            all_ones &= b == 1;
            if next == NONE {
                return Err(HpackError::BadHuffman);
            }
            if next & LEAF != 0 {
                let symbol = next & !LEAF;
                if symbol == EOS {
                    return Err(HpackError::BadHuffman);
                }
                out.push(symbol as u8);
                (node, depth, all_ones) = (0, 0, true);
            } else {
                node = next as usize;
            }
        }
    }
    // What is left must be padding: under 8 bits, all ones (the start of EOS).
    if depth > 7 || !all_ones {
        return Err(HpackError::BadHuffman);
    }
    Ok(out)
}

/// Checks the decoder on the request examples of RFC 7541 C.4 (three blocks on one
/// connection, Huffman-coded, filling the dynamic table), so that a floor run never rests
/// on a decoder that reads wrong.
pub fn self_check() -> Result<(), String> {
    let hex = |s: &str| -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("0"), 16).unwrap_or(0))
            .collect()
    };
    let examples = [
        (
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ],
        ),
        (
            "8286 84be 5886 a8eb 1064 9cbf",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ],
        ),
        (
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ],
        ),
    ];
    let mut decoder = Decoder::new();
    for (block, want) in examples {
        let mut got = Vec::new();
        decoder
            .decode(&hex(block), |n, v| {
                got.push((
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ))
            })
            .map_err(|e| format!("RFC 7541 C.4 {block}: {e:?}"))?;
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        if got != want {
            return Err(format!("RFC 7541 C.4 {block}: got {got:?}"));
        }
    }
    // After C.4.3 the table holds three entries, 164 bytes (RFC 7541 C.4.3).
    if decoder.size != 164 || decoder.table.len() != 3 {
        return Err(format!("RFC 7541 C.4: table size {}", decoder.size));
    }
    Ok(())
}
