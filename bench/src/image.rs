//! Generated blobs and images.
//!
//! A layer is not stored anywhere: it is a seed and a size. Its bytes are made on demand
//! in 1 MiB chunks by a fast PRNG (wyrand keyed by seed and chunk index), so any range of
//! it can be produced again (a retry, a chunked upload, a ranged verify) without holding
//! the blob. The digest is computed once, in a first pass before the clock starts, so the
//! client never hashes while it is timed. Configs and manifests are small and kept as bytes.
//!
//! The layers are random bytes under the uncompressed tar media type: registries store
//! layers without looking inside, and random data keeps compression anywhere on the path
//! from flattering the figures.

use bytes::{Bytes, BytesMut};
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub const CHUNK: u64 = 1 << 20;
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A blob to push or fetch, with its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    content: Content,
}

#[derive(Clone, Debug)]
enum Content {
    Generated { seed: u64 },
    Bytes(Bytes),
}

impl Blob {
    /// The blob of `size` bytes generated from `seed`; hashes all of it (call it off the
    /// async threads for large sizes, and before the clock starts).
    pub fn generated(seed: u64, size: u64) -> Blob {
        let content = Content::Generated { seed };
        let mut h = Sha256::new();
        for c in chunks_of(&content, size, 0, size) {
            h.update(&c);
        }
        Blob {
            digest: format!("sha256:{}", hex::encode(h.finalize())),
            size,
            content,
        }
    }

    pub fn from_bytes(bytes: Bytes) -> Blob {
        Blob {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            size: bytes.len() as u64,
            content: Content::Bytes(bytes),
        }
    }

    /// The bytes `[start, end)` in chunks of at most 1 MiB, made as they are taken.
    pub fn chunks(&self, start: u64, end: u64) -> impl Iterator<Item = Bytes> + Send + 'static {
        chunks_of(&self.content, self.size, start, end)
    }
}

fn chunks_of(
    content: &Content,
    size: u64,
    start: u64,
    end: u64,
) -> impl Iterator<Item = Bytes> + Send + 'static {
    let end = end.min(size);
    let content = content.clone();
    let mut at = start.min(end);
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let index = at / CHUNK;
        let chunk_start = index * CHUNK;
        let chunk_end = (chunk_start + CHUNK).min(size);
        let piece = match &content {
            Content::Bytes(b) => b.slice(at as usize..(chunk_end.min(end)) as usize),
            Content::Generated { seed } => {
                let whole = generate(*seed, index, (chunk_end - chunk_start) as usize);
                whole
                    .slice((at - chunk_start) as usize..(chunk_end.min(end) - chunk_start) as usize)
            }
        };
        at += piece.len() as u64;
        Some(piece)
    })
}

/// Chunk `index` of the blob generated from `seed`: wyrand seeded by a splitmix of both.
fn generate(seed: u64, index: u64, len: usize) -> Bytes {
    let mut state = splitmix(seed ^ splitmix(index));
    let mut out = BytesMut::zeroed(len);
    let mut words = out.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&wyrand(&mut state).to_le_bytes());
    }
    let tail = words.into_remainder();
    let last = wyrand(&mut state).to_le_bytes();
    tail.copy_from_slice(&last[..tail.len()]);
    out.freeze()
}

fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state) * u128::from(*state ^ 0xe703_7ed1_a0b4_28db);
    (t >> 64) as u64 ^ t as u64
}

/// A seed mixer, so that neighbouring seeds give unrelated streams.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A generated image: a config naming its seed, layers, and the OCI manifest over them.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Bytes,
    pub digest: String,
}

impl Image {
    /// Generates and hashes `layers` layers of `layer_size` bytes (blocking; before timing).
    pub fn generate(seed: u64, layers: usize, layer_size: u64) -> Image {
        let layers: Vec<Blob> = (0..layers as u64)
            .map(|j| Blob::generated(splitmix(seed.wrapping_add(j)), layer_size))
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"shoal-bench.seed": seed.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.digest).collect::<Vec<_>>()},
        }))
        .expect("a JSON value serialises");
        let config = Blob::from_bytes(config.into());
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": layers.iter().map(|l| json!({
                "mediaType": OCI_LAYER, "digest": l.digest, "size": l.size,
            })).collect::<Vec<_>>(),
        }))
        .expect("a JSON value serialises");
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        Image {
            config,
            layers,
            manifest: manifest.into(),
            digest,
        }
    }

    /// Generates one image per seed, hashing on the blocking pool in parallel.
    pub async fn generate_many(
        seeds: impl IntoIterator<Item = u64>,
        layers: usize,
        layer_size: u64,
    ) -> anyhow::Result<Vec<Image>> {
        let tasks: Vec<_> = seeds
            .into_iter()
            .map(|s| tokio::task::spawn_blocking(move || Image::generate(s, layers, layer_size)))
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await?);
        }
        Ok(out)
    }

    /// Config and layers: every blob the manifest references.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// Bytes of all its blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs().map(|b| b.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(it: impl Iterator<Item = Bytes>) -> Vec<u8> {
        it.flat_map(|b| b.to_vec()).collect()
    }

    #[test]
    fn chunks_cover_the_size_exactly() {
        let b = Blob::generated(7, CHUNK * 2 + 5);
        let sizes: Vec<usize> = b.chunks(0, b.size).map(|c| c.len()).collect();
        assert_eq!(sizes, [CHUNK as usize, CHUNK as usize, 5]);
        assert_eq!(b.chunks(0, 0).count(), 0);
        assert_eq!(Blob::generated(1, 0).chunks(0, 0).count(), 0);
    }

    #[test]
    fn any_range_is_the_slice_of_the_whole() {
        let b = Blob::generated(42, CHUNK * 3 + 17);
        let whole = gather(b.chunks(0, b.size));
        assert_eq!(
            b.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&whole)))
        );
        let check = |start: u64, end: u64| {
            assert_eq!(
                gather(b.chunks(start, end)),
                whole[start as usize..end.min(b.size) as usize],
                "{start}..{end}"
            )
        };
        check(0, 10);
        check(CHUNK - 3, CHUNK + 3);
        check(CHUNK, 2 * CHUNK);
        check(5, b.size);
        check(b.size - 1, b.size + 100);
        let small = Blob::from_bytes(Bytes::from_static(b"hello, world"));
        assert_eq!(gather(small.chunks(7, 12)), b"world");
    }

    #[test]
    fn seeds_give_different_data() {
        assert_ne!(generate(1, 0, 64), generate(2, 0, 64));
        assert_ne!(generate(1, 0, 64), generate(1, 1, 64));
        assert_eq!(generate(1, 3, 64), generate(1, 3, 64));
    }

    #[test]
    fn images_reference_their_blobs() {
        let img = Image::generate(9, 2, 1000);
        let m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
        assert_eq!(m["config"]["digest"], img.config.digest.as_str());
        assert_eq!(m["layers"][1]["digest"], img.layers[1].digest.as_str());
        assert_eq!(m["layers"][1]["size"], 1000);
        assert_ne!(img.layers[0].digest, img.layers[1].digest);
        assert_ne!(Image::generate(10, 2, 1000).digest, img.digest);
    }
}
