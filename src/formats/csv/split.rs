//! The scan of the plain-line splitter: where a line's fields end, found 16 bytes at a time.
//!
//! A chunk of 16 bytes is compared with the four bytes that stop the splitter (the delimiter,
//! `\n`, `\r` and the quote) at once, giving a bit per stop byte; the splitter then visits
//! only those bytes. On x86_64 the compare is a handful of SSE2 instructions (SSE2 is part of
//! every x86_64 CPU: no feature detection); elsewhere it is done in two 64-bit words (SWAR).

use super::reader::Role;

/// `0x01` in every byte.
const LOW_BITS: u64 = 0x0101_0101_0101_0101;

/// The bytes that stop the splitter, each repeated in a 64-bit word.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stops([u64; 4]);

impl Stops {
    /// The stops of a splitter with this delimiter and quote.
    pub(super) fn new(delimiter: u8, quote: u8) -> Stops {
        Stops([delimiter, b'\n', b'\r', quote].map(|b| u64::from(b) * LOW_BITS))
    }

    /// Bit `i` is set when byte `i` of `chunk` is a stop byte.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn mask(&self, chunk: &[u8; 16]) -> u32 {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi64x,
        };
        let [a, b, c, d] = self.0.map(|w| w as i64);
        // SAFETY: SSE2 is part of the x86_64 baseline, so these instructions exist wherever
        // this code runs; the one load reads the 16 bytes of `chunk` (unaligned load).
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let hits = _mm_or_si128(
                _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi64x(a)),
                    _mm_cmpeq_epi8(v, _mm_set1_epi64x(b)),
                ),
                _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi64x(c)),
                    _mm_cmpeq_epi8(v, _mm_set1_epi64x(d)),
                ),
            );
            _mm_movemask_epi8(hits) as u32
        }
    }

    /// Bit `i` is set when byte `i` of `chunk` is a stop byte.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn mask(&self, chunk: &[u8; 16]) -> u32 {
        self.swar_mask(chunk)
    }

    /// [`Stops::mask`] in two 64-bit words.
    #[cfg(any(not(target_arch = "x86_64"), test))]
    #[inline(always)]
    fn swar_mask(&self, chunk: &[u8; 16]) -> u32 {
        let v = u128::from_le_bytes(*chunk);
        self.word_mask(v as u64) | self.word_mask((v >> 64) as u64) << 8
    }

    /// Bit `i` is set when byte `i` of `word` (little-endian) is a stop byte.
    #[cfg(any(not(target_arch = "x86_64"), test))]
    #[inline(always)]
    fn word_mask(&self, word: u64) -> u32 {
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        // In each byte of `x`, the high bit of `((x & 0x7f) + 0x7f) | x` is clear exactly when
        // the byte is zero (no carry crosses bytes); ANDed over the stops, it is clear where
        // any stop matched.
        let mut kept = !0u64;
        for s in self.0 {
            let x = word ^ s;
            kept &= ((x & LOW7) + LOW7) | x;
        }
        let hits = !kept & !LOW7;
        // Gather the high bits (7, 15, .., 63) into the low byte, in order: each lands on its
        // own bit of the top byte, with no carries.
        ((hits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    }
}

/// Splits the plain line at `buf[start..]`: pushes the span (from `start`) of each field that
/// a delimiter ends. Returns where the scan stopped (a `\n`, `\r` or quote, or the end of
/// `buf`) and where the last field starts.
#[inline(always)]
pub(super) fn split_line(
    buf: &[u8],
    start: usize,
    stops: &Stops,
    roles: &[Role; 256],
    spans: &mut Vec<(usize, usize)>,
) -> (usize, usize) {
    let mut field = start;
    let mut j = start;
    while let Some(chunk) = buf.get(j..).and_then(<[u8]>::first_chunk::<16>) {
        let mut bits = stops.mask(chunk);
        while bits != 0 {
            let k = j + bits.trailing_zeros() as usize;
            if roles[usize::from(buf[k])] != Role::Delimiter {
                return (k, field);
            }
            spans.push((field - start, k - start));
            field = k + 1;
            bits &= bits - 1;
        }
        j += 16;
    }
    // The last bytes of the buffer, one at a time.
    while j < buf.len() {
        match roles[usize::from(buf[j])] {
            Role::Plain => {}
            Role::Delimiter => {
                spans.push((field - start, j - start));
                field = j + 1;
            }
            Role::Special => return (j, field),
        }
        j += 1;
    }
    (j, field)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both masks mark exactly the stop bytes, whatever the other bytes are.
    #[test]
    fn masks_mark_exactly_the_stop_bytes() {
        let stops = Stops::new(b';', b'\'');
        let bytes = [
            b'a',
            b';',
            b'\n',
            b'\r',
            b'\'',
            0,
            0x80,
            0xff,
            b'\\',
            b';' + 128,
            0x7f,
        ];
        let mut chunk = [0u8; 16];
        for seed in 0..20_000u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for b in chunk.iter_mut() {
                *b = bytes[(x % bytes.len() as u64) as usize];
                x = x.rotate_left(7) ^ (x >> 3);
            }
            let want = chunk.iter().enumerate().fold(0u32, |m, (i, b)| {
                m | (u32::from(matches!(b, b';' | b'\n' | b'\r' | b'\'')) << i)
            });
            assert_eq!(stops.mask(&chunk), want, "{chunk:?}");
            assert_eq!(stops.swar_mask(&chunk), want, "{chunk:?}");
        }
    }
}
