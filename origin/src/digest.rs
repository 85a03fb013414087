//! Content digests: the only way blobs are named anywhere in Shoal.
//!
//! A `Digest` can only hold a well-formed `algorithm:hex` value for an algorithm we can
//! verify (sha256, sha512), so every path built from it is safe and every comparison is exact.
//! `Hasher` hides which algorithm is running so callers stream bytes through one type.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::Error;

/// A digest algorithm Shoal can verify. Declared in the order of their names, so the derived
/// order is that of the names (listings rely on it, see `Digest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Every algorithm, in order.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0…`. Its order is that of its string form:
/// the algorithm first (in the order of the names), then the hex, which is lowercase and of
/// one length per algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part, safe to use as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte slice held in memory (manifests, tests).
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(bytes);
        h.finish()
    }

    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidDigest(s.chars().take(200).collect());
        let (alg, hex) = s.split_once(':').ok_or_else(invalid)?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(Error::UnsupportedDigest(alg.chars().take(64).collect())),
        };
        let ok = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(invalid());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Streaming hash for either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = input.parse::<Digest>();
        match (got, expected) {
            (Ok(d), Ok(want)) => assert_eq!(d.to_string(), want),
            (Err(e), Err(kind)) => assert!(format!("{e:?}").starts_with(kind), "{input}: {e:?}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_digests() {
        let h64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let s256 = format!("sha256:{h64}");
        check(&s256, Ok(&s256));
        let s512 = format!("sha512:{}", "a".repeat(128));
        check(&s512, Ok(&s512));
        check(
            &format!("sha256:{}", h64.to_uppercase()),
            Err("InvalidDigest"),
        );
        check(&format!("sha256:{}", &h64[1..]), Err("InvalidDigest"));
        check(&format!("sha512:{h64}"), Err("InvalidDigest"));
        check("sha256:../../etc/passwd", Err("InvalidDigest"));
        check(h64, Err("InvalidDigest"));
        check("", Err("InvalidDigest"));
        check(&format!("md5:{h64}"), Err("UnsupportedDigest"));
    }

    /// Paged listings promise the order of the string form and compare with `Ord`.
    #[test]
    fn digests_order_as_their_strings() {
        let mut digests: Vec<Digest> = ["b", "a", "c", "", "zz"]
            .iter()
            .flat_map(|s| Algorithm::ALL.map(|alg| Digest::of(alg, s.as_bytes())))
            .collect();
        let mut strings: Vec<String> = digests.iter().map(ToString::to_string).collect();
        digests.sort();
        strings.sort();
        let sorted: Vec<String> = digests.iter().map(ToString::to_string).collect();
        assert_eq!(sorted, strings);
    }

    #[test]
    fn empty_sha256() {
        assert_eq!(
            Digest::sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
