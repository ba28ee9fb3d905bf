//! The numbers of the column encoding (docs/FORMAT.md §5.7, "Numbers"): `uv` (unsigned
//! LEB128), `sv` (a zigzag delta from a base, modulo the field's width) and `u32le`, written
//! into a column's buffer and read back from a bounded cursor that names its column in every
//! refusal.

use crate::format::PayloadError;

/// Appends `v` as a `uv`: 7 bits a byte, lowest first, the top bit on all but the last.
pub fn put_uv(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `x − base` (modulo 2^32) zigzagged as a `uv`: small steps either way stay short.
pub fn put_sv32(out: &mut Vec<u8>, x: u32, base: u32) {
    let d = x.wrapping_sub(base) as i32;
    put_uv(out, ((d << 1) ^ (d >> 31)) as u32 as u64);
}

/// Appends `x − base` (modulo 2^64) zigzagged as a `uv`.
pub fn put_sv64(out: &mut Vec<u8>, x: u64, base: u64) {
    let d = x.wrapping_sub(base) as i64;
    put_uv(out, ((d << 1) ^ (d >> 63)) as u64);
}

/// Appends `bytes` as a `uv` length then the bytes.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uv(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A reader over one column's bytes: every read is checked against the column's end.
pub struct Column<'a> {
    name: &'static str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Column<'a> {
    pub fn new(name: &'static str, bytes: &'a [u8]) -> Self {
        Column { name, bytes, at: 0 }
    }

    /// A refusal naming this column.
    pub fn bad(&self, msg: impl std::fmt::Display) -> PayloadError {
        PayloadError::format(format!(
            "manifest does not decode: column {}: {msg}",
            self.name
        ))
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The column's bytes, whole.
    pub fn all(&self) -> &'a [u8] {
        self.bytes
    }

    /// The column's whole length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Refuses `n` values that need at least `each` bytes apiece when fewer bytes are left:
    /// called before anything is allocated for them.
    pub fn room_for(&self, n: u64, each: u64, what: &str) -> Result<usize, PayloadError> {
        match n.checked_mul(each) {
            Some(need) if need <= self.left() as u64 => Ok(n as usize),
            _ => Err(self.bad(format!(
                "{n} {what} cannot fit in the {} bytes left",
                self.left()
            ))),
        }
    }

    pub fn byte(&mut self) -> Result<u8, PayloadError> {
        Ok(self.take(1)?[0])
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], PayloadError> {
        if n > self.left() {
            return Err(self.bad(format!("ends {} bytes early", n - self.left())));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub fn uv(&mut self) -> Result<u64, PayloadError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            let group = (b & 0x7f) as u64;
            // The 10th byte holds bit 63 alone.
            if i == 9 && group > 1 {
                return Err(self.bad("a number exceeds 2^64 - 1"));
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.bad("a number is longer than 10 bytes"))
    }

    /// A `uv` of a 32-bit field.
    pub fn uv32(&mut self) -> Result<u32, PayloadError> {
        let v = self.uv()?;
        u32::try_from(v).map_err(|_| self.bad(format!("{v} does not fit a 32-bit field")))
    }

    /// A `uv` length, checked against the bytes left before anything is taken.
    pub fn len_at_most_left(&mut self, what: &str) -> Result<usize, PayloadError> {
        let n = self.uv()?;
        self.room_for(n, 1, what)
    }

    /// A `uv` length then that many bytes.
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], PayloadError> {
        let n = self.len_at_most_left(what)?;
        self.take(n)
    }

    pub fn sv32(&mut self, base: u32) -> Result<u32, PayloadError> {
        let z = self.uv32()?;
        let d = ((z >> 1) as i32) ^ -((z & 1) as i32);
        Ok(base.wrapping_add(d as u32))
    }

    pub fn sv64(&mut self, base: u64) -> Result<u64, PayloadError> {
        let z = self.uv()?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        Ok(base.wrapping_add(d as u64))
    }

    pub fn u32le(&mut self) -> Result<u32, PayloadError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// FORMAT.md §5.7: a column ends exactly where its last value does.
    pub fn finish(self) -> Result<(), PayloadError> {
        match self.left() {
            0 => Ok(()),
            n => Err(self.bad(format!("{n} bytes left over after its last value"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T>(bytes: &[u8], f: impl FnOnce(&mut Column) -> Result<T, PayloadError>) -> T {
        let mut c = Column::new("test", bytes);
        let v = f(&mut c).expect("reads");
        c.finish().expect("all used");
        v
    }

    #[test]
    fn numbers_round_trip_at_their_edges() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut b = vec![];
            put_uv(&mut b, v);
            assert_eq!(read(&b, |c| c.uv()), v);
        }
        for (x, base) in [(0u32, 0u32), (5, 7), (u32::MAX, 0), (0, u32::MAX), (7, 5)] {
            let mut b = vec![];
            put_sv32(&mut b, x, base);
            assert_eq!(read(&b, |c| c.sv32(base)), x, "{x} from {base}");
        }
        for (x, base) in [(0u64, 0u64), (u64::MAX, 0), (0, u64::MAX), (1 << 63, 3)] {
            let mut b = vec![];
            put_sv64(&mut b, x, base);
            assert_eq!(read(&b, |c| c.sv64(base)), x, "{x} from {base}");
        }
        let mut b = vec![];
        put_sv32(&mut b, 9, 10);
        assert_eq!(b, [1], "a step of -1 takes one byte");
    }

    #[test]
    fn bad_numbers_are_refused_with_their_column() {
        let err = |bytes: &[u8], f: fn(&mut Column) -> Result<u64, PayloadError>| {
            f(&mut Column::new("test", bytes)).unwrap_err().to_string()
        };
        assert!(err(&[0x80; 11], |c| c.uv()).contains("longer than 10 bytes"));
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(err(&over, |c| c.uv()).contains("exceeds 2^64"));
        assert!(err(&[0x80], |c| c.uv()).contains("column test: ends 1 bytes early"));
        let mut big = vec![];
        put_uv(&mut big, 1 << 32);
        assert!(err(&big, |c| c.uv32().map(u64::from)).contains("does not fit a 32-bit"));
        assert!(err(&[5, 1, 2], |c| c.bytes("xattr names").map(|_| 0)).contains("5 xattr names"));
        let c = Column::new("test", &[1, 2]);
        assert!(
            c.finish()
                .unwrap_err()
                .to_string()
                .contains("2 bytes left over")
        );
        let c = Column::new("test", &[0; 10]);
        assert!(c.room_for(u64::MAX, 2, "runs").is_err());
        assert_eq!(c.room_for(5, 2, "runs").unwrap(), 5);
    }
}
