//! Finding the dots of a compact JWS, eight bytes a step.

/// The index of the first `.` in `b` at or after `from`.
///
/// Eight bytes a step with the classic zero-byte test on a `u64` (exact up to the first dot:
/// only bytes after it may be marked wrongly, so the lowest marked byte is the dot), then
/// byte by byte for the last few.
#[inline]
pub(super) fn find_dot(b: &[u8], from: usize) -> Option<usize> {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ (L * u64::from(b'.'));
        let m = x.wrapping_sub(L) & !x & H;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| c == b'.').map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::find_dot;

    #[test]
    fn finds_the_first_dot_like_a_byte_scan() {
        // Every length up to 40, a dot (or none) at each place, bytes around it that trip a
        // careless zero-byte test (0x2D, 0xAE, 0x2F, 0x00, 0xFF), every start.
        let fillers = [b'a', b'-', 0xAE, b'/', 0x00, 0xFF, b'_'];
        for len in 0..50 {
            for dot in (0..len).map(Some).chain([None]) {
                for &fill in &fillers {
                    let mut b = vec![fill; len];
                    if let Some(d) = dot {
                        b[d] = b'.';
                        if d + 1 < len {
                            b[d + 1] = b'.';
                        }
                    }
                    for from in 0..=len + 1 {
                        let want = b
                            .get(from..)
                            .and_then(|r| r.iter().position(|&c| c == b'.'))
                            .map(|p| from + p);
                        assert_eq!(find_dot(&b, from), want, "{b:?} from {from}");
                    }
                }
            }
        }
    }
}
